// Hono typing shared by the app and its routes: bindings, and what the middlewares put in the context.

import type { Context } from 'hono';
import type { KeyRecord } from './auth/api-key-store';
import type { EdgeConfig } from './config';

export interface AppEnv {
  Bindings: Env;
  Variables: { config: EdgeConfig; apiKey: KeyRecord };
}

export type AppContext = Context<AppEnv>;

/** ctx.waitUntil when there is an execution context (always in workerd); otherwise just keep errors quiet. */
export function waitUntilOf(c: AppContext): (promise: Promise<unknown>) => void {
  let ctx: ExecutionContext | undefined;
  try {
    ctx = c.executionCtx as ExecutionContext;
  } catch {
    ctx = undefined;
  }
  return (promise) => {
    const quiet = promise.catch(() => undefined);
    if (ctx) ctx.waitUntil(quiet);
  };
}

/** The Cache API's default cache where the runtime has one. */
export function defaultCache(): Cache | null {
  return typeof caches !== 'undefined' ? (caches as unknown as { default: Cache }).default : null;
}
