// The one module that loads XGrammar (@mlc-ai/web-xgrammar 0.1.27, WASM). The package is a UMD bundle under
// "type": "module" that needs `require` and `__filename`; it is run here as the CommonJS module it can be.
// Its fatal errors (an unsupported schema keyword, a bad regex) go to stderr as `[FATAL] file:line: message`
// lines followed by an abort; `captureFatal` turns them into the error message.

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { runInThisContext } from 'node:vm';
import type * as XGrammarModule from '@mlc-ai/web-xgrammar';

export type XGrammar = typeof XGrammarModule;
export type { CompiledGrammar, GrammarCompiler, GrammarMatcher } from '@mlc-ai/web-xgrammar';

let loading: Promise<XGrammar> | null = null;
/** Where XGrammar's stderr goes; the WASM side binds console.error once, when its binding starts. */
let stderrSink: ((text: string) => void) | null = null;

export function loadXGrammar(): Promise<XGrammar> {
  loading ??= (async () => {
    const require = createRequire(import.meta.url);
    const entry = require.resolve('@mlc-ai/web-xgrammar');
    // Evaluated as the CommonJS module its UMD header supports, with its own `exports`: importing it instead
    // depends on which globals the thread happens to have (a worker started from eval code has `exports`).
    const text = await readFile(entry, 'utf8');
    // Its Node branch runs `await import('module')`, which code compiled by vm cannot do without an
    // experimental flag; `require('module')` gives the same createRequire.
    const dynamicImport = "await import('module')";
    if (text.split(dynamicImport).length !== 2) throw new Error(`@mlc-ai/web-xgrammar: expected one ${dynamicImport} (version pinned at 0.1.27)`);
    const source = text.replace(dynamicImport, "require('module')");
    const factory = runInThisContext(`(function (exports, module, require, __filename, __dirname) {${source}\n})`, { filename: entry });
    const module = { exports: {} as Record<string, unknown> };
    factory.call(module.exports, module.exports, module, require, entry, dirname(entry));
    const api = module.exports as unknown as XGrammar;
    if (!api.GrammarCompiler) throw new Error('@mlc-ai/web-xgrammar loaded without its API');
    // Start the binding with a console.error that forwards to the current sink, then put the real one back.
    const original = console.error;
    console.error = (...args: unknown[]) => (stderrSink ? stderrSink(args.map(String).join(' ')) : original(...args));
    try {
      (await api.Grammar.fromEBNF('root ::= "a"')).dispose();
    } finally {
      console.error = original;
    }
    return api;
  })();
  return loading;
}

/**
 * Runs `work` with stderr lines of XGrammar's C++ side captured; a failure is rethrown with the `[FATAL]`
 * message (without the source location), so callers can say which keyword or pattern was refused.
 * After such an abort the WASM instance's state is suspect: callers must not keep using it.
 */
export async function captureFatal<T>(work: () => Promise<T>): Promise<T> {
  const lines: string[] = [];
  const previous = stderrSink;
  stderrSink = (text) => {
    if (text.includes('[FATAL]') || text.startsWith('Aborted')) lines.push(text);
    else console.error(text);
  };
  try {
    return await work();
  } catch (error) {
    const fatal = lines.find((line) => line.includes('[FATAL]'));
    const message = fatal ? fatal.replace(/^.*\[FATAL\]\s*\S+:\d+:\s*/, '').replace(/^Check failed: \(.*?\) is false:\s*/, '') : (error as Error).message;
    throw new GrammarCompileError(message, Boolean(fatal));
  } finally {
    stderrSink = previous;
  }
}

export class GrammarCompileError extends Error {
  constructor(
    message: string,
    /** XGrammar aborted: the WASM instance that ran the work should be thrown away. */
    readonly aborted: boolean,
  ) {
    super(message);
  }
}

/** Whether this thread has loaded XGrammar (the engine thread never should: grammar-thread.ts). */
export function xgrammarLoadedInThisThread(): boolean {
  return loading !== null;
}
