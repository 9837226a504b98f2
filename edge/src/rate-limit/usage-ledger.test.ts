import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { RateLimiter } from './rate-limiter';
import { AMEND_WINDOW_MS, USAGE_DAYS_KEPT, UsageLedger } from './usage-ledger';

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

  it("amends a client-closed request's bill once by the backend's count, charging the bucket what it adds", async () => {
    const stub = stubFor('usage-amend');
    const admitted = await stub.admit(limits, 500);
    const read = { promptTokens: 30, cachedTokens: 0, completionTokens: 3 };
    const released = await stub.release(limits, admitted.leaseId!, read, true);
    const counts = (completionTokens: number, cachedTokens: number) => ({ requests: 1, promptTokens: 30, cachedTokens, completionTokens });
    expect((await stub.usage()).total).toEqual(counts(3, 0));
    const counted = { promptTokens: 30, cachedTokens: 8, completionTokens: 20 };
    const amended = await stub.amend(limits, admitted.leaseId!, counted);
    expect(await stub.usage()).toEqual({ total: counts(20, 8), days: [{ date: today(), ...counts(20, 8) }] });
    // 17 completion tokens more are charged; the bucket refills meanwhile, so at most 17 fewer remain.
    expect(released.remainingTokens - amended.remainingTokens).toBeLessThanOrEqual(17);
    expect(released.remainingTokens - amended.remainingTokens).toBeGreaterThan(0);
    // Once only; and a lease released without awaitingCount, or never seen, is not amended.
    await stub.amend(limits, admitted.leaseId!, { ...counted, completionTokens: 90 });
    const plain = await stub.admit(limits, 500);
    await stub.release(limits, plain.leaseId!, read);
    await stub.amend(limits, plain.leaseId!, counted);
    await stub.amend(limits, 'no-such-lease', counted);
    expect((await stub.usage()).total).toEqual({ requests: 2, promptTokens: 60, cachedTokens: 8, completionTokens: 23 });
  });

  it('keeps a provisional bill when the count is lower than what was read, or comes after AMEND_WINDOW_MS', async () => {
    await runInDurableObject(stubFor('usage-amend-window'), (_: RateLimiter, state) => {
      const ledger = new UsageLedger(state.storage.sql);
      const at = Date.parse('2026-05-04T10:00:00Z');
      ledger.recordAmendable('lower', { promptTokens: 10, cachedTokens: 0, completionTokens: 5 }, at);
      expect(ledger.amend('lower', { promptTokens: 10, cachedTokens: 2, completionTokens: 4 }, at + 1)).toBe(0);
      ledger.recordAmendable('late', { promptTokens: 10, cachedTokens: 0, completionTokens: 5 }, at);
      expect(ledger.amend('late', { promptTokens: 10, cachedTokens: 0, completionTokens: 50 }, at + AMEND_WINDOW_MS)).toBe(0);
      expect(ledger.read(at + AMEND_WINDOW_MS).total).toEqual({ requests: 2, promptTokens: 20, cachedTokens: 2, completionTokens: 10 });
    });
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
