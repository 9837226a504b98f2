// A key's billed usage as its key's RateLimiter keeps it: GET /v1/usage for the key's holder (its own key
// only), GET /admin/keys/:keyId/usage for the operator (any key, revoked ones included).

import type { AppContext } from '../app-env';
import { findKeyRecord } from '../auth/find-key-record';
import { HttpError } from '../../../shared/http-error';
import type { UsageCounts, UsageReport } from '../rate-limit/usage-ledger';

/** snake_case, as OpenAI names the same counts in a response's `usage`. */
interface WireCounts {
  requests: number;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
}

export interface KeyUsageBody {
  key_id: string;
  total: WireCounts;
  days: (WireCounts & { date: string })[];
}

function wireCounts(counts: UsageCounts): WireCounts {
  return {
    requests: counts.requests,
    prompt_tokens: counts.promptTokens,
    cached_tokens: counts.cachedTokens,
    completion_tokens: counts.completionTokens,
  };
}

async function usageOf(c: AppContext, keyId: string): Promise<KeyUsageBody> {
  const report: UsageReport = await c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(keyId)).usage();
  return { key_id: keyId, total: wireCounts(report.total), days: report.days.map((day) => ({ date: day.date, ...wireCounts(day) })) };
}

export async function ownUsage(c: AppContext): Promise<Response> {
  return c.json(await usageOf(c, c.get('apiKey').keyId));
}

export async function adminKeyUsage(c: AppContext): Promise<Response> {
  const keyId = c.req.param('keyId') ?? '';
  const record = await findKeyRecord(c.env.API_KEYS, keyId, c.get('config'));
  if (!record) throw new HttpError(404, 'not_found', `No key with id '${keyId.slice(0, 64)}'.`, 'keyId');
  return c.json(await usageOf(c, record.keyId));
}
