// The operator commands against wrangler's real local KV state (a fresh --persist-to folder): what an
// operator reads when a name is missing.

import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../scripts/stack';

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
