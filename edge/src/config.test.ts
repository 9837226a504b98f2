// The edge's config defaults that depend on the backend: the idle timeout allows three backend pings.

import { describe, expect, it } from 'vitest';
import { BACKEND_HEARTBEAT_MS } from '../../shared/protocol';
import { readConfig } from './config';

const vars = (extra: Record<string, string> = {}) =>
  ({ BACKEND_URLS: 'http://127.0.0.1:8000', MODEL_ID: 'm', MAX_MODEL_LEN: '4096', ...extra }) as unknown as Env;

describe('readConfig', () => {
  it("waits three backend heartbeats before calling a backend's stream idle, and pings its own clients every 5 s", () => {
    const config = readConfig(vars());
    expect(config.backendIdleTimeoutMs).toBe(3 * BACKEND_HEARTBEAT_MS);
    expect(config.backendIdleTimeoutMs).toBe(45_000);
    expect(config.heartbeatMs).toBe(5_000);
    expect(readConfig(vars({ BACKEND_IDLE_TIMEOUT_MS: '50' })).backendIdleTimeoutMs).toBe(50);
  });

  it('names the variable at fault', () => {
    expect(() => readConfig(vars({ BACKEND_IDLE_TIMEOUT_MS: '0' }))).toThrow('BACKEND_IDLE_TIMEOUT_MS must be at least 1');
    expect(() => readConfig(vars({ HEARTBEAT_MS: 'often' }))).toThrow('HEARTBEAT_MS must be a non-negative integer');
  });
});
