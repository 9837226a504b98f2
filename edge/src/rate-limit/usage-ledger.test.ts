import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { RateLimiter } from './rate-limiter';
import { USAGE_DAYS_KEPT, UsageLedger } from './usage-ledger';

const limits = { rpm: 100, tpm: 10_000, concurrent: 4 };
const stubFor = (keyId: string) => env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(keyId));
const today = () => new Date().toISOString().slice(0, 10);
const DAY_MS = 86_400_000;

describe('UsageLedger in the RateLimiter', () => {
  it('bills a lease once, with the same tokens its release charges to the bucket', async () => {
    const stub = stubFor('usage-settle');
    const admittedAt = Date.now();
    const admitted = await stub.admit(limits, 500);
    const used = { promptTokens: 30, cachedTokens: 8, completionTokens: 12 };
    const settled = await stub.release(limits, admitted.leaseId!, used);
    const refillBound = Math.ceil(((Date.now() - admittedAt) * limits.tpm) / 60_000);
    // A second release of the same lease (another end path of the same request) bills nothing more.
    await stub.release(limits, admitted.leaseId!, used);
    const counts = { requests: 1, promptTokens: 30, cachedTokens: 8, completionTokens: 12 };
    expect(await stub.usage()).toEqual({ total: counts, days: [{ date: today(), ...counts }] });
    // Charged: prompt + completion (cached prompt tokens count too), as billed; the bucket refills meanwhile at
    // tpm / 60 s, which a loaded machine stretches to several tokens.
    expect(10_000 - settled.remainingTokens).toBeGreaterThanOrEqual(42 - refillBound);
    expect(10_000 - settled.remainingTokens).toBeLessThanOrEqual(42);
  });

  it('bills nothing and refunds the reservation for a request that never reached a backend (release with null)', async () => {
    const stub = stubFor('usage-null');
    const admitted = await stub.admit(limits, 500);
    const settled = await stub.release(limits, admitted.leaseId!, null);
    expect(settled.remainingTokens).toBe(10_000);
    expect(await stub.usage()).toEqual({ total: { requests: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0 }, days: [] });
  });

  it('splits by UTC day, keeps USAGE_DAYS_KEPT days and a lifetime total', async () => {
    await runInDurableObject(stubFor('usage-days'), (_: RateLimiter, state) => {
      const ledger = new UsageLedger(state.storage.sql);
      const lastMs = Date.parse('2026-03-01T23:59:59.999Z');
      ledger.record({ promptTokens: 10, cachedTokens: 0, completionTokens: 1 }, lastMs);
      ledger.record({ promptTokens: 20, cachedTokens: 5, completionTokens: 2 }, lastMs + 1);
      ledger.record({ promptTokens: 40, cachedTokens: 0, completionTokens: 4 }, lastMs + 1 + (USAGE_DAYS_KEPT - 1) * DAY_MS);
      // Counts from RPC are clamped to non-negative integers.
      ledger.record({ promptTokens: -3, cachedTokens: Number.NaN, completionTokens: 2.7 }, lastMs + 1 + (USAGE_DAYS_KEPT - 1) * DAY_MS);
      const report = ledger.read(lastMs + 1 + (USAGE_DAYS_KEPT - 1) * DAY_MS);
      // 2026-03-02 is the oldest of the 400 days ending 399 days later; 03-01 is gone, but stays in the total.
      expect(report.days).toEqual([
        { date: '2026-03-02', requests: 1, promptTokens: 20, cachedTokens: 5, completionTokens: 2 },
        { date: '2027-04-05', requests: 2, promptTokens: 40, cachedTokens: 0, completionTokens: 6 },
      ]);
      expect(report.total).toEqual({ requests: 4, promptTokens: 70, cachedTokens: 5, completionTokens: 9 });
      const stored = state.storage.sql.exec<{ period: string }>('SELECT period FROM usage_day ORDER BY period').toArray();
      expect(stored.map((row) => row.period)).toEqual(['2026-03-02', '2027-04-05']);
    });
  });
});
