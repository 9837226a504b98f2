// The engine thread's grammar side: the model's vocabulary, the compiled-grammar cache and the matchers of
// new requests (one per choice, so forks never share matcher state). Grammars reach it only after the HTTP
// thread's check worker compiled them within the time limit, so a compile here is bounded and cannot abort.

import type { GrammarSource } from './grammar-source';
import { GrammarCompilerCache } from './grammar-compiler';
import { readModelVocabulary } from './model-vocabulary';
import { GrammarState } from './grammar-state';

export class GrammarRuntime {
  private constructor(readonly compilers: GrammarCompilerCache) {}

  /** Null (with the reason) when the model folder has no readable vocabulary: grammar requests are refused. */
  static async load(modelDir: string): Promise<{ runtime: GrammarRuntime } | { error: string }> {
    const vocabulary = await readModelVocabulary(modelDir);
    if ('error' in vocabulary) return vocabulary;
    const compilers = await GrammarCompilerCache.create(vocabulary);
    return { runtime: new GrammarRuntime(compilers) };
  }

  static fromCompilers(compilers: GrammarCompilerCache): GrammarRuntime {
    return new GrammarRuntime(compilers);
  }

  /** One fresh matcher per choice of a request. */
  async statesFor(source: GrammarSource, choices: number): Promise<GrammarState[]> {
    const { xgrammar, vocabulary } = this.compilers;
    if (source.toolCalls && vocabulary.toolCallsTokenId === null) throw new Error("this model's vocabulary has no [TOOL_CALLS] token");
    const compiled = await this.compilers.compile(source);
    return Promise.all(
      Array.from({ length: choices }, () => GrammarState.create(xgrammar, compiled, source, vocabulary.toolCallsTokenId, vocabulary.vocabSize)),
    );
  }
}
