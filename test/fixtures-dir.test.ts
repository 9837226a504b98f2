// Without the shared fixtures, `npm test` stops at once with one line naming the folder it expected.

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../scripts/stack';

describe('missing fixtures', () => {
  it('vitest exits 1 with one line naming the missing folder and FIXTURES_DIR, before any test runs', () => {
    const vitest = path.join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs');
    const result = spawnSync(process.execPath, [vitest, 'run', 'test/help.test.ts'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: { ...process.env, FIXTURES_DIR: '/nonexistent/fixtures' },
    });
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toEqual([
      'test fixtures not found: /nonexistent/fixtures does not exist (expected the shared fixtures folder beside this repository, ../shared/fixtures; set FIXTURES_DIR=/path/to/fixtures to use another)',
    ]);
    expect(result.stdout).not.toMatch(/✓|passed|failed/);
  }, 60_000);
});
