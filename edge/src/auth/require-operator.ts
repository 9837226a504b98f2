// Guards operator routes (/metrics, /admin/keys): the ADMIN_API_KEY, or locally the DEV_API_KEY. With neither
// set the routes answer 404, so a deployment without an admin key exposes nothing.

import { createMiddleware } from 'hono/factory';
import type { AppEnv } from '../app-env';
import { readConfig } from '../config';
import { HttpError } from '../../../shared/http-error';
import { bearerToken, secretMatches } from './authenticate';

export const requireOperator = createMiddleware<AppEnv>(async function requireOperator(c, next) {
  const config = readConfig(c.env);
  if (!config.adminApiKey && !config.devApiKey) throw new HttpError(404, 'not_found', 'Not found.');
  const secret = bearerToken(c.req.header('authorization'));
  const allowed = (await secretMatches(secret, config.adminApiKey)) || (await secretMatches(secret, config.devApiKey));
  if (!allowed) throw new HttpError(401, 'invalid_api_key', 'Incorrect operator key provided (ADMIN_API_KEY, or DEV_API_KEY locally).');
  c.set('config', config);
  await next();
});
