// The edge worker: OpenAI-compatible API in front of the token-ids backends. Auth and per-key limits
// first, then templates + tokenization here, generation on the backends, SSE back to the client.

import { Hono } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { AppEnv } from './app-env';
import { findKeyRecord } from './auth/find-key-record';
import { authenticate } from './auth/authenticate';
import { requireOperator } from './auth/require-operator';
import { readConfig, type EdgeConfig } from './config';
import { HttpError, errorResponse } from '../../shared/http-error';
import { modelNotFound } from './generation/generation-setup';
import { edgeMetrics } from './observability/edge-metrics';
import { adminSystemPrompts } from './routes/admin-system-prompts';
import { chatCompletions } from './routes/chat-completions';
import { completions } from './routes/completions';
import { adminKeyUsage, ownUsage } from './routes/key-usage';
import { systemPromptNames } from './routes/system-prompt-names';
import { detokenize, tokenize } from './routes/tokenize';

export { RateLimiter } from './rate-limit/rate-limiter';

const app = new Hono<AppEnv>();

app.use('*', async function observe(c, next) {
  const started = Date.now();
  await next();
  // Clocks advance across I/O in workerd: this is the time to response headers, not the stream's length.
  const route = c.req.routePath === '/*' ? 'unmatched' : c.req.routePath;
  edgeMetrics.countRequest(route, c.res.status, (Date.now() - started) / 1000);
  c.env.ANALYTICS?.writeDataPoint({
    indexes: [c.var.apiKey?.keyId ?? 'anonymous'],
    blobs: [route, String(c.res.status), c.req.method],
    doubles: [Date.now() - started],
  });
});

app.get('/health', (c) => c.json({ ok: true }));
app.get('/metrics', requireOperator, (c) => c.text(edgeMetrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4' }));
// A key's live limiter state: remaining budgets and the requests holding its slots (operators, the soak test).
app.get('/admin/keys/:keyId/limits', requireOperator, async (c) => {
  const { limits } = (await findKeyRecord(c.env.API_KEYS, c.req.param('keyId'), c.get('config'))) ?? {};
  if (!limits) throw new HttpError(404, 'not_found', `No key with id '${c.req.param('keyId').slice(0, 64)}'.`);
  const stub = c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(c.req.param('keyId')));
  return c.json({ ...(await stub.inspect(limits)), slotsHeldInThisIsolate: edgeMetrics.slotsHeld(c.req.param('keyId')) });
});
app.get('/admin/keys/:keyId/usage', requireOperator, adminKeyUsage);

const requireApiKey = createMiddleware<AppEnv>(async function requireApiKey(c, next) {
  const config = readConfig(c.env);
  c.set('config', config);
  c.set('apiKey', await authenticate(c.req.header('authorization'), c.env.API_KEYS, config));
  await next();
});

app.use('/v1/*', requireApiKey);
app.use('/tokenize', requireApiKey);
app.use('/detokenize', requireApiKey);

function modelObject(config: EdgeConfig) {
  return { id: config.modelId, object: 'model', created: 0, owned_by: 'mistral-edge', max_model_len: config.maxModelLen };
}

app.get('/v1/models', (c) => c.json({ object: 'list', data: [modelObject(c.get('config'))] }));
// The openai client's models.retrieve(id).
app.get('/v1/models/:id{.+}', (c) => {
  const config = c.get('config');
  const id = c.req.param('id');
  if (id !== config.modelId) throw modelNotFound(id, config.modelId);
  return c.json(modelObject(config));
});
app.get('/v1/system_prompts', systemPromptNames);
app.get('/v1/usage', ownUsage);
app.post('/v1/chat/completions', chatCompletions);
app.post('/v1/completions', completions);
app.post('/tokenize', tokenize);
app.post('/detokenize', detokenize);
app.route('/admin/system-prompts', adminSystemPrompts);

app.notFound(() => errorResponse(new HttpError(404, 'not_found', 'Unknown route.')));

app.onError((error) => {
  if (error instanceof HttpError) {
    edgeMetrics.countError(error.code);
    return errorResponse(error);
  }
  edgeMetrics.countError('internal_error');
  // Never echo internals: the message goes to the worker log only.
  console.error('edge: unhandled error', error);
  return errorResponse(new HttpError(500, 'internal_error', 'The server had an error processing the request.'));
});

export default app;
