// The worker side of rate limiting: admission over RPC, OpenAI's x-ratelimit-* headers, 429s, and release.

import type { Usage } from '../../../shared/protocol';
import type { KeyRecord } from '../auth/api-key-store';
import { HttpError } from '../../../shared/http-error';
import { edgeMetrics } from '../observability/edge-metrics';
import { LEASE_RENEW_MS, type AdmitResult, type RateLimitSnapshot } from './rate-limiter';

export interface Admission {
  headers: Record<string, string>;
  /**
   * Idempotent; settles reserved against used tokens, bills `used` to the key's usage, and stops the lease's
   * renewals. Null: the request never reached a backend (nothing charged or billed). Safe from any end path.
   */
  release(used: Usage | null): Promise<void>;
  /**
   * For a request whose client left before its usage came: releases at once, as release(read) does (the slot and
   * the unused reservation come back as soon), and once `counted` (the backend's count of what it generated)
   * resolves, bills and charges what it holds beyond `read`. `counted` null (the backend could not be asked or gave
   * no count): `read` stays billed. A no-op after an earlier release, like release.
   */
  releaseAwaitingCount(read: Usage, counted: Promise<Usage | null>): Promise<void>;
}

function duration(seconds: number): string {
  // OpenAI writes resets like "1s", "6m0s", "120ms"; clients parse these with a duration regex.
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round((seconds - minutes * 60) * 100) / 100;
  return minutes > 0 ? `${minutes}m${rest}s` : `${rest}s`;
}

export function rateLimitHeaders(state: RateLimitSnapshot): Record<string, string> {
  return {
    'x-ratelimit-limit-requests': String(state.limitRequests),
    'x-ratelimit-remaining-requests': String(state.remainingRequests),
    'x-ratelimit-reset-requests': duration(state.resetRequestsSeconds),
    'x-ratelimit-limit-tokens': String(state.limitTokens),
    'x-ratelimit-remaining-tokens': String(state.remainingTokens),
    'x-ratelimit-reset-tokens': duration(state.resetTokensSeconds),
  };
}

const REFUSALS = {
  requests: (key: KeyRecord) => `Rate limit reached for requests: limit ${key.limits.rpm} per minute.`,
  tokens: (key: KeyRecord) =>
    `Rate limit reached for tokens: limit ${key.limits.tpm} per minute (prompt tokens + max_tokens, or an estimate without max_tokens, are reserved).`,
  concurrent: (key: KeyRecord) => `Too many concurrent requests: limit ${key.limits.concurrent}.`,
  too_large: (key: KeyRecord) => `Request too large: prompt tokens + max_tokens exceed the limit of ${key.limits.tpm} tokens per minute.`,
};

export async function admitRequest(namespace: Env['RATE_LIMITER'], key: KeyRecord, tokens: number): Promise<Admission> {
  const stub = namespace.get(namespace.idFromName(key.keyId));
  const started = Date.now();
  let result: AdmitResult;
  try {
    result = await stub.admit(key.limits, tokens);
  } catch (error) {
    // Fail closed, but as a retryable 503 rather than a crash: the limiter object may be restarting.
    console.error('edge: rate limiter unavailable', error);
    throw new HttpError(503, 'internal_error', 'Rate limiting is temporarily unavailable; retry shortly.', null, { 'retry-after': '1' });
  }
  const headers = rateLimitHeaders(result);
  // Wall time of the admission round trip (clocks only advance across I/O in workerd, which this is).
  headers['server-timing'] = `ratelimit;dur=${Date.now() - started}`;
  if (!result.ok || !result.leaseId) {
    const reason = result.reason ?? 'requests';
    if (result.retryAfterSeconds > 0) headers['retry-after'] = String(result.retryAfterSeconds);
    edgeMetrics.countRateLimited(key.keyId, reason);
    throw new HttpError(429, 'rate_limit_exceeded', REFUSALS[reason](key), null, headers);
  }
  const leaseId = result.leaseId;
  let released: Promise<void> | null = null;
  edgeMetrics.holdSlot(key.keyId, 1);
  // Renewed while the request runs; if this context dies without releasing, the lease lapses within LEASE_TTL_MS.
  const renewal = setInterval(() => {
    stub.renew(leaseId).catch((error: unknown) => console.error('edge: lease renewal failed', error));
  }, LEASE_RENEW_MS);
  /** Releases the lease once; true for the call that did. */
  const releaseOnce = (used: Usage | null, awaitingCount: boolean): boolean => {
    clearInterval(renewal);
    if (released) return false;
    edgeMetrics.holdSlot(key.keyId, -1);
    released = stub.release(key.limits, leaseId, used, awaitingCount).then(
      () => undefined,
      (error: unknown) => console.error(`edge: releasing lease ${leaseId} of key ${key.keyId} failed (it lapses within 30 s)`, error),
    );
    return true;
  };
  return {
    headers,
    release(used: Usage | null) {
      releaseOnce(used, false);
      return released as Promise<void>;
    },
    releaseAwaitingCount(read: Usage, counted: Promise<Usage | null>) {
      if (!releaseOnce(read, true)) return released as Promise<void>;
      return Promise.all([released, counted]).then(async ([, usage]) => {
        if (!usage) return;
        await stub
          .amend(key.limits, leaseId, usage)
          .catch((error: unknown) =>
            console.error(`edge: amending the usage of lease ${leaseId} of key ${key.keyId} failed (what the edge read stays billed)`, error),
          );
      });
    },
  };
}
