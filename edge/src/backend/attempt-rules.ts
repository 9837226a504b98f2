// What each kind of failed attempt on one backend leads to (BackendPool.open): whether the next backend is
// tried, whether this one cools down, which metric counts it, and what the client is told.

import { HttpError } from '../../../shared/http-error';
import type { BackendOutcome } from '../observability/edge-metrics';

/** What a failed attempt on one backend came to. */
export type AttemptOutcome =
  | 'mismatched'
  | 'server_error'
  | 'unauthorized'
  | 'overloaded'
  | 'invalid_request'
  | 'unexpected_answer'
  | 'headers_timeout'
  | 'connect_error'
  | 'caller_gone';

interface AttemptRule {
  /** Try the next backend: nothing has reached the client yet, and another backend may answer. */
  retry: boolean;
  /** Start the backend's cooldown. */
  markFailed: boolean;
  metric: BackendOutcome | null;
  /** What the client is told when this is the last attempt. */
  error: () => HttpError;
}

export const unavailable = () =>
  new HttpError(503, 'backend_unavailable', 'No model backend is available right now; retry shortly.', null, { 'retry-after': '1' });
const overloaded = () => new HttpError(503, 'overloaded', 'The model is overloaded; retry shortly.', null, { 'retry-after': '1' });
const rejected = () => new HttpError(400, 'invalid_request', 'The model backend rejected the request parameters.');

/** Never passes a backend's own message through (except a grammar refusal, see grammarRefusal). */
export const ATTEMPT_RULES: Record<AttemptOutcome, AttemptRule> = {
  // Another model or protocol version: never this request's backend, and not worth asking again soon.
  mismatched: { retry: true, markFailed: true, metric: 'mismatched', error: unavailable },
  server_error: { retry: true, markFailed: true, metric: 'refused', error: unavailable },
  // 401/403: this backend holds another token, a deployment fault the next backend may not share.
  unauthorized: { retry: true, markFailed: true, metric: 'refused', error: unavailable },
  // 429: full for now, healthy.
  overloaded: { retry: true, markFailed: false, metric: 'refused', error: overloaded },
  // 400/413/422: the request itself; every backend would say the same.
  invalid_request: { retry: false, markFailed: false, metric: 'refused', error: rejected },
  // Any other status, or a 2xx without a body: not a state a retry is known to fix.
  unexpected_answer: { retry: false, markFailed: false, metric: 'refused', error: unavailable },
  // A stopped or wedged process accepts connections and never answers.
  headers_timeout: { retry: true, markFailed: true, metric: 'headers_timeout', error: unavailable },
  connect_error: { retry: true, markFailed: true, metric: 'connect_error', error: unavailable },
  caller_gone: { retry: false, markFailed: false, metric: null, error: unavailable },
};

export function outcomeOfStatus(status: number): AttemptOutcome {
  if (status >= 500) return 'server_error';
  if (status === 401 || status === 403) return 'unauthorized';
  if (status === 429) return 'overloaded';
  if (status === 400 || status === 413 || status === 422) return 'invalid_request';
  return 'unexpected_answer';
}
