// Operator routes for named system prompts: PUT/GET/DELETE /admin/system-prompts/:name behind ADMIN_API_KEY.
// Without ADMIN_API_KEY set the routes answer 404, so a deployment without one exposes nothing.

import { Hono } from 'hono';
import { z } from 'zod';
import { readJsonBody, validate } from '../api/read-request';
import type { AppEnv } from '../app-env';
import { bearerToken, secretMatches } from '../auth/authenticate';
import { readConfig } from '../config';
import { HttpError, badRequest } from '../../../shared/http-error';
import { MAX_PROMPT_CHARS, PROMPT_NAME_PATTERN } from '../prompt/system-prompt-store';
import { systemPromptStore } from '../prompt/prompt-stores';

const putSchema = z.object({ content: z.string().min(1).max(MAX_PROMPT_CHARS) });

export const adminSystemPrompts = new Hono<AppEnv>();

adminSystemPrompts.use('*', async (c, next) => {
  const config = readConfig(c.env);
  if (!config.adminApiKey) throw new HttpError(404, 'not_found', 'Not found.');
  const secret = bearerToken(c.req.header('authorization'));
  if (!(await secretMatches(secret, config.adminApiKey))) throw new HttpError(401, 'invalid_api_key', 'Incorrect admin key provided.');
  c.set('config', config);
  await next();
});

function nameOf(raw: string): string {
  if (!PROMPT_NAME_PATTERN.test(raw)) throw badRequest('A system prompt name is 1-128 of A-Z a-z 0-9 . _ - and starts with a letter or digit.', 'name');
  return raw;
}

adminSystemPrompts.put('/:name', async (c) => {
  const name = nameOf(c.req.param('name'));
  const body = validate(putSchema, await readJsonBody(c.req.raw, c.get('config').maxBodyBytes));
  const stored = await systemPromptStore(c.env).put(name, body.content);
  return c.json(stored);
});

adminSystemPrompts.get('/:name', async (c) => {
  const name = nameOf(c.req.param('name'));
  const stored = await systemPromptStore(c.env).get(name);
  if (!stored) throw new HttpError(404, 'not_found', `No system prompt named '${name}'.`, 'name');
  return c.json(stored);
});

adminSystemPrompts.delete('/:name', async (c) => {
  const name = nameOf(c.req.param('name'));
  const existed = await systemPromptStore(c.env).delete(name);
  if (!existed) throw new HttpError(404, 'not_found', `No system prompt named '${name}'.`, 'name');
  return c.json({ name, deleted: true });
});
