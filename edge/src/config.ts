// Reads and validates the worker's vars once per env object; a bad setting throws naming the setting.

import { BACKEND_HEARTBEAT_MS } from '../../shared/protocol';

export interface EdgeConfig {
  backendUrls: string[];
  backendToken: string;
  modelId: string;
  maxModelLen: number;
  devApiKey: string;
  adminApiKey: string;
  maxBodyBytes: number;
  /** Interval of `: ping` comments while no token has arrived yet. */
  heartbeatMs: number;
  /** How long a positive API key lookup is trusted per isolate (revocation latency on top of KV's own). */
  authCacheTtlMs: number;
  /** How long a streaming request waits for backend headers before committing the 200 (connect errors become 503s). */
  backendConnectWaitMs: number;
  /** A backend that has not answered headers this long after the request is marked failed; the next one is tried. */
  backendHeadersTimeoutMs: number;
  /** Longest silence allowed in a backend's body (it sends `: ping` every BACKEND_HEARTBEAT_MS while busy); past it the request fails. */
  backendIdleTimeoutMs: number;
}

export const MAX_MESSAGES = 1024;
export const MAX_MESSAGE_CHARS = 1_000_000;
export const MAX_CHOICES = 8;
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_CHARS = 256;

const cache = new WeakMap<object, EdgeConfig>();

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return value;
}

function atLeastOne(name: string, raw: string | undefined, fallback: number): number {
  const value = positiveInt(name, raw, fallback);
  if (value < 1) throw new Error(`${name} must be at least 1 (milliseconds), got "${raw}"`);
  return value;
}

function parseBackendUrls(raw: string | undefined): string[] {
  const urls = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (urls.length === 0) throw new Error('BACKEND_URLS must list at least one backend URL');
  return urls.map((url) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`BACKEND_URLS has an invalid URL: "${url}"`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`BACKEND_URLS entry must be http(s): "${url}"`);
    return url.replace(/\/+$/, '');
  });
}

export function readConfig(env: Env): EdgeConfig {
  const known = cache.get(env);
  if (known) return known;
  const maxModelLen = positiveInt('MAX_MODEL_LEN', env.MAX_MODEL_LEN, 0);
  if (maxModelLen < 2) throw new Error(`MAX_MODEL_LEN must be an integer >= 2, got "${env.MAX_MODEL_LEN}"`);
  if (!env.MODEL_ID) throw new Error('MODEL_ID must be set');
  const config: EdgeConfig = {
    backendUrls: parseBackendUrls(env.BACKEND_URLS),
    backendToken: env.BACKEND_TOKEN ?? '',
    modelId: env.MODEL_ID,
    maxModelLen,
    devApiKey: env.DEV_API_KEY ?? '',
    adminApiKey: env.ADMIN_API_KEY ?? '',
    maxBodyBytes: positiveInt('MAX_BODY_BYTES', env.MAX_BODY_BYTES, 4 * 1024 * 1024),
    heartbeatMs: positiveInt('HEARTBEAT_MS', env.HEARTBEAT_MS, 5_000),
    authCacheTtlMs: positiveInt('AUTH_CACHE_TTL_MS', env.AUTH_CACHE_TTL_MS, 5_000),
    backendConnectWaitMs: positiveInt('BACKEND_CONNECT_WAIT_MS', env.BACKEND_CONNECT_WAIT_MS, 2_000),
    backendHeadersTimeoutMs: atLeastOne('BACKEND_HEADERS_TIMEOUT_MS', env.BACKEND_HEADERS_TIMEOUT_MS, 10_000),
    backendIdleTimeoutMs: atLeastOne('BACKEND_IDLE_TIMEOUT_MS', env.BACKEND_IDLE_TIMEOUT_MS, 3 * BACKEND_HEARTBEAT_MS),
  };
  cache.set(env, config);
  return config;
}
