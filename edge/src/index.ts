import { DurableObject } from 'cloudflare:workers';
import { Hono } from 'hono';

export class RateLimiter extends DurableObject {
  async ping(): Promise<string> {
    return 'pong';
  }
}

const app = new Hono();
app.get('/health', (c) => c.json({ ok: true }));
export default app;
