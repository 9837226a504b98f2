// The operator commands against wrangler's real local KV state (a fresh --persist-to folder): what an
// operator reads when a name is missing, or when `keys usage` finds no edge to ask.

import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, REPO_ROOT } from '../scripts/stack';

const state = mkdtempSync(path.join(tmpdir(), 'operator-commands-'));

function prompts(...args: string[]) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'edge/scripts/prompts.ts'), ...args, '--persist-to', state], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('npm run prompts', () => {
  it('stores, reads and deletes a prompt; a missing name is a one-line error with exit 1, never a JSON error or "Deleted"', () => {
    expect(prompts('put', 'greeter', '--text', 'You greet people.').code).toBe(0);
    const got = prompts('get', 'greeter');
    expect(got).toMatchObject({ code: 0, stdout: 'You greet people.\n' });
    expect(prompts('delete', 'greeter')).toMatchObject({ code: 0, stdout: "Deleted 'greeter'.\n" });

    const getMissing = prompts('get', 'greeter');
    expect(getMissing.code).toBe(1);
    expect(getMissing.stderr).toContain("prompts: no system prompt named 'greeter'");
    expect(getMissing.stderr).not.toMatch(/JSON/);
    const deleteMissing = prompts('delete', 'never-stored');
    expect(deleteMissing.code).toBe(1);
    expect(deleteMissing.stderr).toContain("prompts: no system prompt named 'never-stored'");
    expect(deleteMissing.stdout).not.toContain('Deleted');
  }, 120_000);
});

function keys(args: string[], env: NodeJS.ProcessEnv) {
  const clean = { ...process.env, ...env };
  for (const name of ['ADMIN_API_KEY', 'DEV_API_KEY', 'EDGE_PORT']) if (!(name in env)) delete clean[name];
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'edge/scripts/keys.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: clean,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('npm run keys -- usage without a running edge', () => {
  it('says in one line, with exit 1, what is missing: the edge, the operator key, the deployed URL', async () => {
    const port = String(await freePort());
    const down = keys(['usage', 'dev'], { DEV_API_KEY: 'sk-local-x', EDGE_PORT: port });
    expect(down).toMatchObject({ code: 1, stdout: '' });
    expect(down.stderr).toMatch(
      new RegExp(`^keys: no edge answers at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): start the stack \\(npm start\\) or pass --url\n$`),
    );
    const noKey = keys(['usage', 'dev', '--url', `http://127.0.0.1:${port}`], {});
    expect(noKey).toMatchObject({
      code: 1,
      stderr: 'keys: usage needs the operator key in ADMIN_API_KEY (or locally DEV_API_KEY, the key `npm start` printed)\n',
    });
    const remote = keys(['usage', 'dev', '--remote'], { ADMIN_API_KEY: 'admin' });
    expect(remote).toMatchObject({ code: 1, stderr: expect.stringMatching(/^keys: usage --remote needs --url[^\n]*\n$/) });
  }, 60_000);
});
