// `npm run keys -- usage <keyId>`: a key's billed usage, read from a running edge's
// GET /admin/keys/:keyId/usage, so the operator sees exactly what the key's RateLimiter reports to the API.

import { z } from 'zod';

const wireCounts = {
  requests: z.number().int().nonnegative(),
  prompt_tokens: z.number().int().nonnegative(),
  cached_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
};
const usageBodySchema = z.object({
  key_id: z.string(),
  total: z.object(wireCounts),
  days: z.array(z.object({ date: z.string(), ...wireCounts })),
});
type UsageBody = z.infer<typeof usageBodySchema>;
type Counts = UsageBody['total'];

const errorBodySchema = z.object({ error: z.object({ message: z.string(), param: z.string().nullish() }) });
const REQUEST_TIMEOUT_MS = 15_000;

export interface KeyUsageOptions {
  keyId: string | undefined;
  /** The edge's base URL; undefined: the local stack at EDGE_PORT. */
  url: string | undefined;
  json: boolean;
  remote: boolean;
  env: NodeJS.ProcessEnv;
}

function edgeUrl(options: KeyUsageOptions): string {
  if (options.url) return options.url.replace(/\/+$/, '');
  if (options.remote) throw new Error('usage --remote needs --url, the deployed worker (https://<name>.<account>.workers.dev)');
  return `http://127.0.0.1:${options.env.EDGE_PORT || 8787}`;
}

function operatorKey(env: NodeJS.ProcessEnv): string {
  const key = env.ADMIN_API_KEY || env.DEV_API_KEY;
  if (!key) throw new Error('usage needs the operator key in ADMIN_API_KEY (or locally DEV_API_KEY, the key `npm start` printed)');
  return key;
}

async function fetchUsage(base: string, keyId: string, secret: string): Promise<UsageBody> {
  const url = `${base}/admin/keys/${encodeURIComponent(keyId)}/usage`;
  let response: Response;
  try {
    response = await fetch(url, { headers: { authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (error) {
    // undici puts the reason (ECONNREFUSED, a timeout) in the cause; its message is only "fetch failed".
    const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new Error(`no edge answers at ${base} (${reason}): start the stack (npm start) or pass --url`);
  }
  const text = await response.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: reported below with the status.
  }
  const error = errorBodySchema.safeParse(json).data?.error;
  // Only the usage route names the keyId; any other 404 means the route is not there (admin routes off).
  if (response.status === 404 && error?.param === 'keyId') throw new Error(`no key with id ${keyId} (see \`npm run keys -- list\`)`);
  if (response.status === 404)
    throw new Error(`the edge at ${base} has no ${new URL(url).pathname} (HTTP 404): are its admin routes off (no ADMIN_API_KEY) or is it an older worker?`);
  if (!response.ok) throw new Error(`the edge at ${base} answered HTTP ${response.status}: ${error?.message ?? text.slice(0, 200)}`);
  const parsed = usageBodySchema.safeParse(json);
  if (!parsed.success) throw new Error(`the edge at ${base} answered a usage body of another shape: is it this project's worker?`);
  return parsed.data;
}

function row(label: string, counts: Counts): string {
  const cells = [counts.requests, counts.prompt_tokens, counts.cached_tokens, counts.completion_tokens].map((n) => String(n).padStart(12));
  return `${label.padEnd(10)}${cells.join('')}`;
}

function render(body: UsageBody): string {
  const { total } = body;
  const lines = [
    `Key ${body.key_id}: ${total.requests} requests, ${total.prompt_tokens} prompt tokens (${total.cached_tokens} of them cached), ${total.completion_tokens} completion tokens.`,
  ];
  if (body.days.length === 0) return lines.join('\n');
  lines.push('', `${'date (UTC)'.padEnd(10)}${['requests', 'prompt', 'cached', 'completion'].map((name) => name.padStart(12)).join('')}`);
  for (const day of body.days) lines.push(row(day.date, day));
  lines.push(row('total', total));
  return lines.join('\n');
}

/** Prints the key's totals and days (or the raw body with `json`); throws a one-line error otherwise. */
export async function keyUsage(options: KeyUsageOptions): Promise<void> {
  if (!options.keyId) throw new Error('usage needs a keyId (see `npm run keys -- list`; the local dev key is `dev`)');
  const body = await fetchUsage(edgeUrl(options), options.keyId, operatorKey(options.env));
  console.log(options.json ? JSON.stringify(body, null, 2) : render(body));
}
