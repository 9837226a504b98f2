// Guards operator routes (/metrics, /admin/keys): the ADMIN_API_KEY, or locally the DEV_API_KEY. With neither
// set the routes answer 404, so a deployment without an admin key exposes nothing. A valid API key that is
// not an operator's gets a 403 (it authenticated, it is just not allowed), any other secret a 401.

import { createMiddleware } from 'hono/factory';
import type { AppEnv } from '../app-env';
import { readConfig } from '../config';
import { HttpError } from '../../../shared/http-error';
import { authenticate, bearerToken, secretMatches } from './authenticate';

export const requireOperator = createMiddleware<AppEnv>(async function requireOperator(c, next) {
  const config = readConfig(c.env);
  if (!config.adminApiKey && !config.devApiKey) throw new HttpError(404, 'not_found', 'Not found.');
  const header = c.req.header('authorization');
  const secret = bearerToken(header);
  const allowed = (await secretMatches(secret, config.adminApiKey)) || (await secretMatches(secret, config.devApiKey));
  if (!allowed) {
    const holder = await authenticate(header, c.env.API_KEYS, config).catch((error: unknown) => {
      if (error instanceof HttpError && error.status === 401) return null;
      throw error;
    });
    if (!holder) throw new HttpError(401, 'invalid_api_key', 'Incorrect operator key provided (ADMIN_API_KEY, or DEV_API_KEY locally).');
    throw new HttpError(403, 'permission_denied', 'This API key is not an operator key (ADMIN_API_KEY); a key reads its own usage at GET /v1/usage.');
  }
  c.set('config', config);
  await next();
});
