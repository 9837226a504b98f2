// XGrammar's compiler over one model vocabulary, with compiled grammars kept in a bounded LRU by their source
// key (XGrammar's own unbounded cache is turned off). Used by the grammar thread (which masks with them) and by
// the grammar check worker (which proves a spec compiles, and how fast, before the request is admitted).

import type { GrammarSource } from './grammar-source';
import { restrictStringCharacters } from './json-string-safety';
import type { Vocabulary } from './model-vocabulary';
import { reparsableEscapes } from './ebnf-escapes';
import { factorLiteralAlternations } from './literal-trie';
import { boundNumbers } from './number-bounds';
import { captureFatal, loadXGrammar, type CompiledGrammar, type GrammarCompiler as XGrammarCompiler, type XGrammar } from './xgrammar';

/** Compiled grammars kept per process; each holds per-state token masks, a few MB at most for 32k ids. */
export const COMPILED_CACHE_SIZE = 64;
/** The rule that frames a tool-call array: one space after [TOOL_CALLS], as mistral-common writes it. */
const TOOL_CALLS_RULE = 'tool_calls_output';
const SEPARATORS: [string, string] = [', ', ': '];

export interface CompileStats {
  compiles: number;
  cacheHits: number;
  /** Seconds spent compiling (cache misses). */
  compileSeconds: number;
}

export class GrammarCompilerCache {
  readonly stats: CompileStats = { compiles: 0, cacheHits: 0, compileSeconds: 0 };
  private readonly cache = new Map<string, CompiledGrammar>();

  private constructor(
    readonly xgrammar: XGrammar,
    readonly vocabulary: Vocabulary,
    private readonly compiler: XGrammarCompiler,
    private readonly capacity: number,
  ) {}

  static async create(vocabulary: Vocabulary, capacity = COMPILED_CACHE_SIZE): Promise<GrammarCompilerCache> {
    const xgrammar = await loadXGrammar();
    // byte_fallback: "▁" is a space and <0x0A> a byte; SentencePiece prepends a space when it encodes.
    const info = await xgrammar.TokenizerInfo.createTokenizerInfo(vocabulary.encodedVocab, 'byte_fallback', true, vocabulary.vocabSize, [
      vocabulary.eosTokenId,
    ]);
    const compiler = await xgrammar.GrammarCompiler.createGrammarCompiler(info, false);
    // The first compile over a vocabulary also pays a one-time setup: pay it at load, not in the first
    // request (on the engine thread that would stall every stream).
    (await compiler.compileGrammar('root ::= "{}"')).dispose();
    return new GrammarCompilerCache(xgrammar, vocabulary, compiler, capacity);
  }

  /** The compiled grammar of `source` (cached); throws GrammarCompileError with XGrammar's message. */
  async compile(source: GrammarSource): Promise<CompiledGrammar> {
    const cached = this.cache.get(source.key);
    if (cached) {
      this.cache.delete(source.key);
      this.cache.set(source.key, cached);
      this.stats.cacheHits++;
      return cached;
    }
    const started = performance.now();
    const compiled = await captureFatal(() => this.build(source));
    this.stats.compiles++;
    this.stats.compileSeconds += (performance.now() - started) / 1000;
    this.cache.set(source.key, compiled);
    if (this.cache.size > this.capacity) {
      // Matchers made from an evicted grammar keep their own reference to it on the C++ side.
      const [oldestKey, oldest] = this.cache.entries().next().value as [string, CompiledGrammar];
      this.cache.delete(oldestKey);
      oldest.dispose();
    }
    return compiled;
  }

  private async build(source: GrammarSource): Promise<CompiledGrammar> {
    const json = await this.xgrammar.Grammar.fromJSONSchema(source.schema, false, -1, SEPARATORS, source.strict);
    const ebnf = factorLiteralAlternations(boundNumbers(reparsableEscapes(restrictStringCharacters(json.toString()))));
    json.dispose();
    if (!source.toolCalls) return this.compiler.compileGrammar(ebnf, 'root');
    return this.compiler.compileGrammar(`${ebnf}\n${TOOL_CALLS_RULE} ::= " " root\n`, TOOL_CALLS_RULE);
  }
}
