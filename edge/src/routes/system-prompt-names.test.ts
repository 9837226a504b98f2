import { describe, expect, it } from 'vitest';
import { bearer, callEdge, createKey } from '../test-support/edge-harness';

const ADMIN = { ADMIN_API_KEY: 'admin-secret-for-names' };

async function putPrompt(name: string, content: string): Promise<void> {
  const { response } = await callEdge(`/admin/system-prompts/${name}`, { method: 'PUT', headers: bearer(ADMIN.ADMIN_API_KEY), json: { content } }, ADMIN);
  expect(response.status).toBe(200);
}

async function listNames(secret: string): Promise<{ status: number; body: { object: string; data: { id: string; object: string }[]; has_more: boolean } }> {
  const { response } = await callEdge('/v1/system_prompts', { headers: bearer(secret) });
  return { status: response.status, body: (await response.json()) as never };
}

describe('GET /v1/system_prompts', () => {
  it('needs an API key', async () => {
    const { response } = await callEdge('/v1/system_prompts');
    expect(response.status).toBe(401);
  });

  it('lists stored names, sorted, never their contents, and follows puts and deletes at once', async () => {
    const { secret } = await createKey();
    await putPrompt('zeta-names', 'SECRET-CONTENT-Z');
    await putPrompt('alpha-names', 'SECRET-CONTENT-A');
    const first = await listNames(secret);
    expect(first.status).toBe(200);
    expect(first.body.object).toBe('list');
    expect(first.body.has_more).toBe(false);
    const ids = first.body.data.map((entry) => entry.id);
    expect(ids).toEqual([...ids].sort());
    expect(ids.indexOf('alpha-names')).toBeGreaterThanOrEqual(0);
    expect(ids.indexOf('alpha-names')).toBeLessThan(ids.indexOf('zeta-names'));
    expect(first.body.data.every((entry) => entry.object === 'system_prompt')).toBe(true);
    expect(JSON.stringify(first.body)).not.toContain('SECRET-CONTENT');

    // The cached list is dropped when an operator deletes or adds a name through the admin routes.
    const deleted = await callEdge('/admin/system-prompts/zeta-names', { method: 'DELETE', headers: bearer(ADMIN.ADMIN_API_KEY) }, ADMIN);
    expect(deleted.response.status).toBe(200);
    await putPrompt('mid-names', 'SECRET-CONTENT-M');
    const second = (await listNames(secret)).body.data.map((entry) => entry.id);
    expect(second).toContain('alpha-names');
    expect(second).toContain('mid-names');
    expect(second).not.toContain('zeta-names');
  });
});
