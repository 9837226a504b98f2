// The grammar check thread: checks each spec (the JSON Schema rules, then XGrammar's compile against the
// model's vocabulary), so the HTTP thread can answer 400 (refused, with the reason) or 413 (too large, or too
// slow: the HTTP thread terminates this thread after the time limit) before the request is admitted. Both the
// schema walk (ajv builds validators) and the compile take milliseconds to seconds, so neither runs on the HTTP
// thread that carries every stream. After an XGrammar abort it exits: a fresh thread
// replaces it, since the WASM state of an aborted call is not trusted.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { GrammarSpec } from '../../../../shared/protocol';
import { type GrammarSource, grammarSourceOf, MAX_GRAMMAR_TEXT } from './grammar-source';
import { GrammarCompilerCache } from './grammar-compiler';
import { readModelVocabulary } from './model-vocabulary';
import { GrammarCompileError } from './xgrammar';

export type ToCheckThread = { id: number; spec: GrammarSpec };
export type FromCheckThread =
  | { type: 'ready'; unsupported: string | null }
  | { type: 'result'; id: number; ok: true; source: GrammarSource; seconds: number }
  | { type: 'result'; id: number; ok: false; status: 400 | 413; message: string; aborted: boolean };

/** The spec's source, or why it is refused before any compile. */
function sourceOrRefusal(spec: GrammarSpec): GrammarSource | { status: 400 | 413; message: string } {
  const built = grammarSourceOf(spec);
  if (!built.ok) return { status: 400, message: built.message };
  if (built.source.schema.length > MAX_GRAMMAR_TEXT) {
    return { status: 413, message: `the schema is ${built.source.schema.length} characters, over the limit of ${MAX_GRAMMAR_TEXT}` };
  }
  return built.source;
}

async function main(modelDir: string | null): Promise<void> {
  const port = parentPort!;
  const vocabulary = modelDir ? await readModelVocabulary(modelDir) : { error: 'no model folder (fake engine)' };
  if ('error' in vocabulary) {
    port.postMessage({ type: 'ready', unsupported: vocabulary.error } satisfies FromCheckThread);
    return;
  }
  // A cache of one: the HTTP thread remembers outcomes; this thread only needs to compile.
  const compilers = await GrammarCompilerCache.create(vocabulary, 1);
  port.on('message', async ({ id, spec }: ToCheckThread) => {
    const refuse = (status: 400 | 413, message: string, aborted = false) =>
      port.postMessage({ type: 'result', id, ok: false, status, message, aborted } satisfies FromCheckThread);
    const started = performance.now();
    let source: ReturnType<typeof sourceOrRefusal>;
    try {
      source = sourceOrRefusal(spec);
    } catch (error) {
      return refuse(400, `the schema could not be checked: ${(error as Error).message}`);
    }
    if ('status' in source) return refuse(source.status, source.message);
    if (source.toolCalls && vocabulary.toolCallsTokenId === null) {
      return refuse(400, 'tool_calls needs a vocabulary with the [TOOL_CALLS] control token (Mistral v3); this model has none');
    }
    try {
      await compilers.compile(source);
      port.postMessage({ type: 'result', id, ok: true, source, seconds: (performance.now() - started) / 1000 } satisfies FromCheckThread);
    } catch (error) {
      const aborted = error instanceof GrammarCompileError && error.aborted;
      refuse(400, (error as Error).message, aborted);
      if (aborted) process.exit(0);
    }
  });
  port.postMessage({ type: 'ready', unsupported: null } satisfies FromCheckThread);
}

if (!isMainThread && (workerData as { grammarCheck?: unknown } | null)?.grammarCheck) {
  void main((workerData as { grammarCheck: { modelDir: string | null } }).grammarCheck.modelDir);
}
