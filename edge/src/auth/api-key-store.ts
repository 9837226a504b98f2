// API keys as stored in the API_KEYS KV namespace: only SHA-256 hashes of the secrets, with metadata.
// Pure Web Crypto so the operator command (Node) and the worker share it.

import { z } from 'zod';

export const KEY_PREFIX = 'key:';

export const rateLimitsSchema = z.object({
  rpm: z.number().int().positive(),
  tpm: z.number().int().positive(),
  concurrent: z.number().int().positive(),
});
export type RateLimits = z.infer<typeof rateLimitsSchema>;

export const keyRecordSchema = z.object({
  keyId: z.string().min(1),
  label: z.string(),
  limits: rateLimitsSchema,
  created: z.string(),
  revoked: z.boolean(),
});
export type KeyRecord = z.infer<typeof keyRecordSchema>;

/** Limits of the `DEV_API_KEY` accepted by `npm start`: generous, but still limited so the path is exercised. */
export const DEV_KEY_LIMITS: RateLimits = { rpm: 600, tpm: 2_000_000, concurrent: 16 };
export const DEV_KEY_ID = 'dev';

export function devKeyRecord(): KeyRecord {
  return { keyId: DEV_KEY_ID, label: 'DEV_API_KEY', limits: DEV_KEY_LIMITS, created: '', revoked: false };
}

/** Secrets look like `sk-edge-<43 base64url chars>`; anything else is refused before a KV read. */
export const API_KEY_PATTERN = /^[A-Za-z0-9._~+/=-]{8,256}$/;

const encoder = new TextEncoder();

export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(text)));
  let hex = '';
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0');
  return hex;
}

export function kvKeyForHash(hash: string): string {
  return `${KEY_PREFIX}${hash}`;
}

function randomBase64Url(byteCount: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(byteCount));
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function generateSecret(): string {
  return `sk-edge-${randomBase64Url(32)}`;
}

export function generateKeyId(): string {
  return `key_${randomBase64Url(9)}`;
}
