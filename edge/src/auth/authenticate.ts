// Turns an Authorization header into the caller's key record, or a 401 `invalid_api_key`.
// KV is addressed by the SHA-256 of the secret, so a lookup never compares secrets; the one direct
// comparison (DEV_API_KEY) is done on digests in constant time.

import type { EdgeConfig } from '../config';
import { HttpError } from '../../../shared/http-error';
import { LruCache } from '../prompt/lru-cache';
import { API_KEY_PATTERN, devKeyRecord, keyRecordSchema, kvKeyForHash, sha256Hex, type KeyRecord } from './api-key-store';

const positiveCache = new LruCache<string, { record: KeyRecord; expiresAt: number }>(4096);

function unauthorized(message: string): HttpError {
  return new HttpError(401, 'invalid_api_key', message, null, { 'www-authenticate': 'Bearer' });
}

export function bearerToken(header: string | undefined | null): string {
  if (!header) throw unauthorized('Missing API key: send "Authorization: Bearer <key>".');
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match) throw unauthorized('Malformed Authorization header: expected "Bearer <key>".');
  // Well-formed but no key could look like this: a wrong key, refused without a KV read.
  if (!API_KEY_PATTERN.test(match[1])) throw unauthorized('Incorrect API key provided.');
  return match[1];
}

async function digestEquals(a: string, b: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [da, db] = await Promise.all([crypto.subtle.digest('SHA-256', encoder.encode(a)), crypto.subtle.digest('SHA-256', encoder.encode(b))]);
  return crypto.subtle.timingSafeEqual(da, db);
}

/** Constant-time comparison of a presented secret with a configured one (dev key, admin key). */
export async function secretMatches(presented: string, configured: string): Promise<boolean> {
  if (!configured) return false;
  return digestEquals(presented, configured);
}

export async function authenticate(header: string | undefined | null, kv: KVNamespace, config: EdgeConfig): Promise<KeyRecord> {
  const secret = bearerToken(header);
  if (await secretMatches(secret, config.devApiKey)) {
    return devKeyRecord();
  }
  const hash = await sha256Hex(secret);
  const now = Date.now();
  const cached = positiveCache.get(hash);
  if (cached && cached.expiresAt > now) return cached.record;
  const stored = await kv.get(kvKeyForHash(hash), 'json');
  const parsed = keyRecordSchema.safeParse(stored);
  if (!parsed.success || parsed.data.revoked) {
    positiveCache.delete(hash);
    throw unauthorized('Incorrect API key provided.');
  }
  if (config.authCacheTtlMs > 0) positiveCache.set(hash, { record: parsed.data, expiresAt: now + config.authCacheTtlMs });
  return parsed.data;
}
