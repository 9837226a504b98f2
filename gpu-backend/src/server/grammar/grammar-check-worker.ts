// The grammar check thread: compiles each spec once against the model's vocabulary, so the HTTP thread can
// answer 400 (XGrammar refused it, with its message) or 413 (too slow: the HTTP thread terminates this thread
// after the time limit) before the request is admitted. After an XGrammar abort it exits: a fresh thread
// replaces it, since the WASM state of an aborted call is not trusted.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { GrammarSource } from './grammar-source';
import { GrammarCompilerCache } from './grammar-compiler';
import { readModelVocabulary } from './model-vocabulary';
import { GrammarCompileError } from './xgrammar';

export type ToCheckThread = { id: number; source: GrammarSource };
export type FromCheckThread =
  | { type: 'ready'; unsupported: string | null }
  | { type: 'result'; id: number; ok: true; seconds: number }
  | { type: 'result'; id: number; ok: false; message: string; aborted: boolean };

async function main(modelDir: string | null): Promise<void> {
  const port = parentPort!;
  const vocabulary = modelDir ? await readModelVocabulary(modelDir) : { error: 'no model folder (fake engine)' };
  if ('error' in vocabulary) {
    port.postMessage({ type: 'ready', unsupported: vocabulary.error } satisfies FromCheckThread);
    return;
  }
  // A cache of one: the HTTP thread remembers outcomes; this thread only needs to compile.
  const compilers = await GrammarCompilerCache.create(vocabulary, 1);
  port.on('message', async ({ id, source }: ToCheckThread) => {
    if (source.toolCalls && vocabulary.toolCallsTokenId === null) {
      port.postMessage({
        type: 'result',
        id,
        ok: false,
        message: 'tool_calls needs a vocabulary with the [TOOL_CALLS] control token (Mistral v3); this model has none',
        aborted: false,
      } satisfies FromCheckThread);
      return;
    }
    const started = performance.now();
    try {
      await compilers.compile(source);
      port.postMessage({ type: 'result', id, ok: true, seconds: (performance.now() - started) / 1000 } satisfies FromCheckThread);
    } catch (error) {
      const aborted = error instanceof GrammarCompileError && error.aborted;
      port.postMessage({ type: 'result', id, ok: false, message: (error as Error).message, aborted } satisfies FromCheckThread);
      if (aborted) process.exit(0);
    }
  });
  port.postMessage({ type: 'ready', unsupported: null } satisfies FromCheckThread);
}

if (!isMainThread && (workerData as { grammarCheck?: unknown } | null)?.grammarCheck) {
  void main((workerData as { grammarCheck: { modelDir: string | null } }).grammarCheck.modelDir);
}
