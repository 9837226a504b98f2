// Bindings and vars of the edge worker (wrangler.toml + secrets), in the shape `wrangler types` emits.
// Hand-kept because secrets (BACKEND_TOKEN, DEV_API_KEY, ADMIN_API_KEY) and test-only blobs are not in wrangler.toml.

declare namespace Cloudflare {
  interface Env {
    API_KEYS: KVNamespace;
    SYSTEM_PROMPTS: KVNamespace;
    RATE_LIMITER: DurableObjectNamespace<import('./src/rate-limit/rate-limiter').RateLimiter>;
    /** Comma-separated backend base URLs. */
    BACKEND_URLS: string;
    MODEL_ID: string;
    MAX_MODEL_LEN: string;
    /** Shared secret sent to the backends as `authorization: Bearer <token>`. */
    BACKEND_TOKEN?: string;
    /** Local development key accepted with DEV_KEY_LIMITS (empty or unset: none). */
    DEV_API_KEY?: string;
    /** Bearer key for /admin/* routes (empty or unset: admin routes answer 404). */
    ADMIN_API_KEY?: string;
    /** Optional tuning vars, all numbers as strings. */
    MAX_BODY_BYTES?: string;
    HEARTBEAT_MS?: string;
    AUTH_CACHE_TTL_MS?: string;
    BACKEND_CONNECT_WAIT_MS?: string;
    BACKEND_HEADERS_TIMEOUT_MS?: string;
    BACKEND_IDLE_TIMEOUT_MS?: string;
    /** Optional Workers Analytics Engine dataset: one data point per API request (edge/src/observability). */
    ANALYTICS?: AnalyticsEngineDataset;
    /** Test-only fixture blobs (edge/vitest.config.ts). */
    FIXTURE_TOKENIZER_V1?: ArrayBuffer;
    FIXTURE_TOKENIZER_V3?: ArrayBuffer;
    FIXTURE_PUBLISHED_VECTORS?: string;
    FIXTURE_TOOL_SAMPLES?: string;
  }
}
interface Env extends Cloudflare.Env {}
