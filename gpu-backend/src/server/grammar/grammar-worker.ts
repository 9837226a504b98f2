// The grammar thread: owns XGrammar for the engine thread. It compiles each new spec once (cached by its key,
// bounded LRU), makes one matcher per choice and fills their masks, so the engine thread never compiles and
// never waits on XGrammar while other streams decode. XGrammar 0.1.27's compiled grammars live in one WASM
// heap and cannot be serialized, so the thread that compiles a grammar is the thread that runs its matchers.
// Specs reach it only after the HTTP thread's check compiled them within the time limit.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { GrammarSource } from './grammar-source';
import { GrammarCompilerCache } from './grammar-compiler';
import { readModelVocabulary } from './model-vocabulary';
import type { GrammarMatcher } from './xgrammar';

export type ToGrammarThread =
  | { type: 'prepare'; id: number; source: GrammarSource; choices: number }
  | { type: 'accept'; handle: number; tokenId: number }
  | { type: 'masks'; batch: number; handles: number[] }
  | { type: 'dispose'; handle: number };

/** A mask, or why the matcher cannot give one (it refused an id, or it is gone). */
export type MaskReply = { mask: Int32Array } | { error: string };

export type FromGrammarThread =
  | { type: 'ready'; unsupported: string } // no vocabulary: grammar requests are refused
  | { type: 'ready'; unsupported: null; source: string; vocabSize: number; eosTokenId: number; toolCallsTokenId: number | null }
  | { type: 'prepared'; id: number; handles: number[] }
  | { type: 'prepare-failed'; id: number; message: string }
  | { type: 'masks'; batch: number; replies: MaskReply[] };

interface Held {
  matcher: GrammarMatcher;
  /** Set once the matcher refused an id: every later mask of it fails with this. */
  refused: string | null;
}

async function main(dir: string): Promise<void> {
  const port = parentPort!;
  const vocabulary = await readModelVocabulary(dir);
  if ('error' in vocabulary) {
    port.postMessage({ type: 'ready', unsupported: vocabulary.error } satisfies FromGrammarThread);
    return;
  }
  const compilers = await GrammarCompilerCache.create(vocabulary);
  const held = new Map<number, Held>();
  let nextHandle = 1;

  const prepare = async (id: number, source: GrammarSource, choices: number): Promise<FromGrammarThread> => {
    if (source.toolCalls && vocabulary.toolCallsTokenId === null)
      return { type: 'prepare-failed', id, message: "this model's vocabulary has no [TOOL_CALLS] token" };
    try {
      const compiled = await compilers.compile(source);
      const handles: number[] = [];
      for (let choice = 0; choice < choices; choice++) {
        const handle = nextHandle++;
        held.set(handle, { matcher: await compilers.xgrammar.GrammarMatcher.createGrammarMatcher(compiled), refused: null });
        handles.push(handle);
      }
      return { type: 'prepared', id, handles };
    } catch (error) {
      return { type: 'prepare-failed', id, message: (error as Error).message };
    }
  };
  const mask = async (handle: number): Promise<MaskReply> => {
    const entry = held.get(handle);
    if (!entry) return { error: `grammar matcher ${handle} is gone` };
    if (entry.refused) return { error: entry.refused };
    try {
      return { mask: await entry.matcher.getNextTokenBitmask() };
    } catch (error) {
      return { error: `filling the grammar mask failed: ${(error as Error).message}` };
    }
  };

  // Messages are handled in order, one at a time, so a mask always follows the accepts sent before it.
  let queue = Promise.resolve();
  port.on('message', (message: ToGrammarThread) => {
    queue = queue.then(async () => {
      if (message.type === 'prepare') port.postMessage(await prepare(message.id, message.source, message.choices));
      else if (message.type === 'accept') {
        const entry = held.get(message.handle);
        if (entry && !entry.refused && !entry.matcher.acceptToken(message.tokenId)) {
          entry.refused = `grammar matcher refused id ${message.tokenId} drawn under its own mask`;
        }
      } else if (message.type === 'masks') {
        const replies = await Promise.all(message.handles.map(mask));
        const buffers = replies.flatMap((reply) => ('mask' in reply ? [reply.mask.buffer as ArrayBuffer] : []));
        port.postMessage({ type: 'masks', batch: message.batch, replies } satisfies FromGrammarThread, buffers);
      } else {
        held.get(message.handle)?.matcher.dispose();
        held.delete(message.handle);
      }
    });
  });
  port.postMessage({
    type: 'ready',
    unsupported: null,
    source: vocabulary.source,
    vocabSize: vocabulary.vocabSize,
    eosTokenId: vocabulary.eosTokenId,
    toolCallsTokenId: vocabulary.toolCallsTokenId,
  } satisfies FromGrammarThread);
}

if (!isMainThread && (workerData as { grammarThread?: unknown } | null)?.grammarThread) {
  void main((workerData as { grammarThread: { dir: string } }).grammarThread.dir);
}
