// Per-key limits in one Durable Object per key (`idFromName(keyId)`): requests/minute and tokens/minute as
// token buckets that refill continuously, plus a lease per in-flight stream for the concurrency cap.
// Every method runs without an await, so calls are atomic: a burst of M > N requests admits exactly N.
// The key's usage for billing (usage-ledger.ts) lives here too, settled with the token bucket.

import { DurableObject } from 'cloudflare:workers';
import type { Usage } from '../../../shared/protocol';
import type { RateLimits } from '../auth/api-key-store';
import { UsageLedger, type UsageReport } from './usage-ledger';

/**
 * A lease lives this long unless renewed: a request renews it every LEASE_RENEW_MS while it runs, so a lease
 * whose release never came (the isolate or its request context died) stops counting within seconds.
 */
export const LEASE_TTL_MS = 30_000;
export const LEASE_RENEW_MS = 10_000;

export interface RateLimitSnapshot {
  limitRequests: number;
  remainingRequests: number;
  /** Seconds until the request bucket is full again. */
  resetRequestsSeconds: number;
  limitTokens: number;
  remainingTokens: number;
  resetTokensSeconds: number;
}

export interface AdmitResult extends RateLimitSnapshot {
  ok: boolean;
  leaseId: string | null;
  /** Which limit refused the request. */
  reason: 'requests' | 'tokens' | 'concurrent' | 'too_large' | null;
  retryAfterSeconds: number;
}

interface Bucket {
  level: number;
  updatedAt: number;
}

export class RateLimiter extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly ledger: UsageLedger;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec('CREATE TABLE IF NOT EXISTS bucket (name TEXT PRIMARY KEY, level REAL NOT NULL, updated_at INTEGER NOT NULL)');
    this.sql.exec('CREATE TABLE IF NOT EXISTS lease (id TEXT PRIMARY KEY, tokens INTEGER NOT NULL, expires_at INTEGER NOT NULL)');
    this.ledger = new UsageLedger(this.sql);
  }

  /** Reserves one request and `tokens` tokens and opens a lease, or refuses without changing anything. */
  admit(limits: RateLimits, tokens: number): AdmitResult {
    const now = Date.now();
    const requests = this.refill('requests', limits.rpm, now);
    const tokenBucket = this.refill('tokens', limits.tpm, now);
    this.sql.exec('DELETE FROM lease WHERE expires_at <= ?', now);
    const active = this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM lease').one().n;

    let reason: AdmitResult['reason'] = null;
    let retryAfterSeconds = 0;
    if (tokens > limits.tpm) reason = 'too_large';
    else if (requests.level < 1) {
      reason = 'requests';
      retryAfterSeconds = secondsUntil(1 - requests.level, limits.rpm);
    } else if (tokenBucket.level < tokens) {
      reason = 'tokens';
      retryAfterSeconds = secondsUntil(tokens - tokenBucket.level, limits.tpm);
    } else if (active >= limits.concurrent) {
      reason = 'concurrent';
      retryAfterSeconds = 1;
    }
    let leaseId: string | null = null;
    if (reason === null) {
      requests.level -= 1;
      tokenBucket.level -= tokens;
      leaseId = crypto.randomUUID();
      this.sql.exec('INSERT INTO lease (id, tokens, expires_at) VALUES (?, ?, ?)', leaseId, tokens, now + LEASE_TTL_MS);
    }
    this.save('requests', requests);
    this.save('tokens', tokenBucket);
    return { ok: reason === null, leaseId, reason, retryAfterSeconds, ...snapshot(limits, requests, tokenBucket) };
  }

  /** Extends a live lease by LEASE_TTL_MS; false when it is gone (released, or expired before this renewal). */
  renew(leaseId: string): boolean {
    const now = Date.now();
    return this.sql.exec('UPDATE lease SET expires_at = ? WHERE id = ? AND expires_at > ?', now + LEASE_TTL_MS, leaseId, now).rowsWritten > 0;
  }

  /**
   * Ends a lease and settles its tokens: the reserved tokens that were not used come back, and tokens used
   * beyond the reservation (a request without max_tokens reserves an estimate) are charged, so the bucket
   * may go below zero and the key waits for it to refill. The same prompt + completion tokens go to the
   * key's usage, in the same transaction; `used` null (the request never reached a backend) refunds the
   * whole reservation and bills nothing. Unknown leases are ignored (idempotent: nothing is billed twice).
   * `awaitingCount`: `used` is what the edge read of a request whose client left; amend() adds the backend's count.
   */
  release(limits: RateLimits, leaseId: string, used: Usage | null, awaitingCount = false): RateLimitSnapshot {
    const now = Date.now();
    const tokenBucket = this.refill('tokens', limits.tpm, now);
    this.ctx.storage.transactionSync(() => {
      const lease = this.sql.exec<{ tokens: number }>('SELECT tokens FROM lease WHERE id = ?', leaseId).toArray()[0];
      if (!lease) return;
      this.sql.exec('DELETE FROM lease WHERE id = ?', leaseId);
      const charged = used ? Math.max(0, used.promptTokens + used.completionTokens) : 0;
      tokenBucket.level = Math.min(limits.tpm, tokenBucket.level + lease.tokens - charged);
      this.save('tokens', tokenBucket);
      if (used && awaitingCount) this.ledger.recordAmendable(leaseId, used, now);
      else if (used) this.ledger.record(used, now);
    });
    return snapshot(limits, this.refill('requests', limits.rpm, now), tokenBucket);
  }

  /**
   * The backend's count of a request released with `awaitingCount`: what it generated beyond what the release
   * billed is billed and charged to the bucket (which may go below zero), once; later calls change nothing.
   */
  amend(limits: RateLimits, leaseId: string, counted: Usage): RateLimitSnapshot {
    const now = Date.now();
    const tokenBucket = this.refill('tokens', limits.tpm, now);
    this.ctx.storage.transactionSync(() => {
      const extra = this.ledger.amend(leaseId, counted, now);
      if (extra === 0) return;
      tokenBucket.level -= extra;
      this.save('tokens', tokenBucket);
    });
    return snapshot(limits, this.refill('requests', limits.rpm, now), tokenBucket);
  }

  /** The key's billed usage: lifetime total and the kept days (usage-ledger.ts). */
  usage(): UsageReport {
    return this.ledger.read(Date.now());
  }

  /** Current state without admitting anything (for tests and operators). */
  inspect(limits: RateLimits): RateLimitSnapshot & { activeLeases: number } {
    const now = Date.now();
    const active = this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM lease WHERE expires_at > ?', now).one().n;
    return { ...snapshot(limits, this.refill('requests', limits.rpm, now), this.refill('tokens', limits.tpm, now)), activeLeases: active };
  }

  private refill(name: string, perMinute: number, now: number): Bucket {
    const row = this.sql.exec<{ level: number; updated_at: number }>('SELECT level, updated_at FROM bucket WHERE name = ?', name).toArray()[0];
    if (!row) return { level: perMinute, updatedAt: now };
    const elapsed = Math.max(0, now - row.updated_at);
    return { level: Math.min(perMinute, row.level + (elapsed * perMinute) / 60_000), updatedAt: now };
  }

  private save(name: string, bucket: Bucket): void {
    this.sql.exec(
      'INSERT INTO bucket (name, level, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at',
      name,
      bucket.level,
      bucket.updatedAt,
    );
  }
}

function secondsUntil(missing: number, perMinute: number): number {
  return Math.max(1, Math.ceil((missing * 60) / perMinute));
}

function snapshot(limits: RateLimits, requests: Bucket, tokens: Bucket): RateLimitSnapshot {
  return {
    limitRequests: limits.rpm,
    remainingRequests: Math.max(0, Math.floor(requests.level)),
    resetRequestsSeconds: Math.max(0, ((limits.rpm - requests.level) * 60) / limits.rpm),
    limitTokens: limits.tpm,
    remainingTokens: Math.max(0, Math.floor(tokens.level)),
    resetTokensSeconds: Math.max(0, ((limits.tpm - tokens.level) * 60) / limits.tpm),
  };
}
