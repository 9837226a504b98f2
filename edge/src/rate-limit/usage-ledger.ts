// A key's usage (requests, prompt / cached / completion tokens) by UTC day plus a lifetime total, in the
// SQLite storage of the key's RateLimiter. RateLimiter.release records it in the same synchronous call that
// settles the token bucket, from the same counts, so billing and rate limiting cannot disagree. A request whose
// client left is billed in two steps: what the edge read at its release, amended once by the backend's count of what
// it generated (RateLimiter.amend), so the key's slot comes back without waiting for the backend.

import type { Usage } from '../../../shared/protocol';

/** Days kept: a year and a month of margin for monthly invoices; older days are dropped, the total stays. */
export const USAGE_DAYS_KEPT = 400;
const DAY_MS = 86_400_000;

export interface UsageCounts {
  requests: number;
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
}

export interface UsageDay extends UsageCounts {
  /** UTC, YYYY-MM-DD. */
  date: string;
}

export interface UsageReport {
  total: UsageCounts;
  /** The days with traffic among the last USAGE_DAYS_KEPT, oldest first. */
  days: UsageDay[];
}

type UsageRow = { period: string; requests: number; prompt_tokens: number; cached_tokens: number; completion_tokens: number };

const COLUMNS = 'requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL';
/** The lifetime row of usage_total. */
const TOTAL = 'all';
/**
 * How long a provisional bill waits for its amendment. The backend answers a stop within a step (the edge gives
 * up after BACKEND_HEADERS_TIMEOUT_MS); a row left past this (the edge's context died) keeps its provisional bill.
 */
export const AMEND_WINDOW_MS = 10 * 60_000;

function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** RPC input: a count is a non-negative integer whatever the caller sent. */
function count(value: number): number {
  return Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

function countsOf(row: UsageRow | undefined): UsageCounts {
  if (!row) return { requests: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0 };
  return { requests: row.requests, promptTokens: row.prompt_tokens, cachedTokens: row.cached_tokens, completionTokens: row.completion_tokens };
}

export class UsageLedger {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS usage_day (period TEXT PRIMARY KEY, ${COLUMNS})`);
    sql.exec(`CREATE TABLE IF NOT EXISTS usage_total (period TEXT PRIMARY KEY, ${COLUMNS})`);
    sql.exec(
      'CREATE TABLE IF NOT EXISTS usage_unamended (lease_id TEXT PRIMARY KEY, prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, billed_at INTEGER NOT NULL)',
    );
  }

  /** Adds one request and its tokens to `now`'s UTC day and to the total; drops days past USAGE_DAYS_KEPT. */
  record(usage: Usage, now: number): void {
    this.add(
      { requests: 1, promptTokens: count(usage.promptTokens), cachedTokens: count(usage.cachedTokens), completionTokens: count(usage.completionTokens) },
      now,
    );
    this.sql.exec('DELETE FROM usage_day WHERE period < ?', firstKeptDate(now));
  }

  /** As record, and keeps what was billed under `leaseId` for one amend() within AMEND_WINDOW_MS. */
  recordAmendable(leaseId: string, usage: Usage, now: number): void {
    this.record(usage, now);
    this.sql.exec('DELETE FROM usage_unamended WHERE billed_at <= ?', now - AMEND_WINDOW_MS);
    this.sql.exec(
      'INSERT OR REPLACE INTO usage_unamended (lease_id, prompt_tokens, cached_tokens, completion_tokens, billed_at) VALUES (?, ?, ?, ?, ?)',
      leaseId,
      count(usage.promptTokens),
      count(usage.cachedTokens),
      count(usage.completionTokens),
      now,
    );
  }

  /**
   * Bills what `counted` (the backend's count) holds beyond the provisional bill of `leaseId`, on the day that bill
   * went to, once; returns the prompt + completion tokens added (0: nothing to amend, or already amended). A field
   * counted below what was billed stays billed: the edge read those ids from the backend, so they were generated.
   */
  amend(leaseId: string, counted: Usage, now: number): number {
    const row = this.sql
      .exec<Omit<UsageRow, 'period' | 'requests'> & { billed_at: number }>('SELECT * FROM usage_unamended WHERE lease_id = ?', leaseId)
      .toArray()[0];
    if (!row || row.billed_at <= now - AMEND_WINDOW_MS) return 0;
    this.sql.exec('DELETE FROM usage_unamended WHERE lease_id = ?', leaseId);
    const extra = {
      requests: 0,
      promptTokens: Math.max(0, count(counted.promptTokens) - row.prompt_tokens),
      cachedTokens: Math.max(0, count(counted.cachedTokens) - row.cached_tokens),
      completionTokens: Math.max(0, count(counted.completionTokens) - row.completion_tokens),
    };
    this.add(extra, row.billed_at);
    return extra.promptTokens + extra.completionTokens;
  }

  private add(counts: UsageCounts, at: number): void {
    for (const [table, period] of [
      ['usage_day', utcDate(at)],
      ['usage_total', TOTAL],
    ]) {
      this.sql.exec(
        `INSERT INTO ${table} (period, requests, prompt_tokens, cached_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(period) DO UPDATE SET requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
         cached_tokens = cached_tokens + excluded.cached_tokens, completion_tokens = completion_tokens + excluded.completion_tokens`,
        period,
        counts.requests,
        counts.promptTokens,
        counts.cachedTokens,
        counts.completionTokens,
      );
    }
  }

  read(now: number): UsageReport {
    const total = this.sql.exec<UsageRow>('SELECT * FROM usage_total WHERE period = ?', TOTAL).toArray()[0];
    const days = this.sql.exec<UsageRow>('SELECT * FROM usage_day WHERE period >= ? ORDER BY period', firstKeptDate(now)).toArray();
    return { total: countsOf(total), days: days.map((row) => ({ date: row.period, ...countsOf(row) })) };
  }
}

/** Today and the USAGE_DAYS_KEPT - 1 days before it are kept. */
function firstKeptDate(now: number): string {
  return utcDate(now - (USAGE_DAYS_KEPT - 1) * DAY_MS);
}
