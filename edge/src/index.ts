// The edge worker: OpenAI-compatible API in front of the token-ids backends. Auth and per-key limits
// first, then templates + tokenization here, generation on the backends, SSE back to the client.

import { Hono } from 'hono';
import { createMiddleware } from 'hono/factory';
import { errorBody } from '../../shared/protocol';
import type { AppEnv } from './app-env';
import { authenticate } from './auth/authenticate';
import { readConfig } from './config';
import { HttpError, errorResponse } from './http-error';
import { adminSystemPrompts } from './routes/admin-system-prompts';
import { chatCompletions } from './routes/chat-completions';
import { completions } from './routes/completions';
import { systemPromptNames } from './routes/system-prompt-names';
import { detokenize, tokenize } from './routes/tokenize';

export { RateLimiter } from './rate-limit/rate-limiter';

const app = new Hono<AppEnv>();

app.get('/health', (c) => c.json({ ok: true }));

const requireApiKey = createMiddleware<AppEnv>(async function requireApiKey(c, next) {
  const config = readConfig(c.env);
  c.set('config', config);
  c.set('apiKey', await authenticate(c.req.header('authorization'), c.env.API_KEYS, config));
  await next();
});

app.use('/v1/*', requireApiKey);
app.use('/tokenize', requireApiKey);
app.use('/detokenize', requireApiKey);

app.get('/v1/models', (c) => {
  const config = c.get('config');
  return c.json({
    object: 'list',
    data: [{ id: config.modelId, object: 'model', created: 0, owned_by: 'mistral-edge', max_model_len: config.maxModelLen }],
  });
});
app.get('/v1/system_prompts', systemPromptNames);
app.post('/v1/chat/completions', chatCompletions);
app.post('/v1/completions', completions);
app.post('/tokenize', tokenize);
app.post('/detokenize', detokenize);
app.route('/admin/system-prompts', adminSystemPrompts);

app.notFound(() => errorResponse(new HttpError(404, 'not_found', 'Unknown route.')));

app.onError((error) => {
  if (error instanceof HttpError) return errorResponse(error);
  // Never echo internals: the message goes to the worker log only.
  console.error('edge: unhandled error', error);
  return new Response(JSON.stringify(errorBody('internal_error', 'The server had an error processing the request.')), {
    status: 500,
    headers: { 'content-type': 'application/json' },
  });
});

export default app;
