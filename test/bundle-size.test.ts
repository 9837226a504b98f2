// What `wrangler deploy` would upload stays small: the worker script under the Workers free plan's limit
// (1 MiB after gzip, the figure this project holds itself to), and the playground page a few files to read.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../scripts/stack';

const FREE_PLAN_GZIP_BYTES = 1024 * 1024;
const PAGE_DIR = path.join(REPO_ROOT, 'edge', 'public');
const outDir = mkdtempSync(path.join(tmpdir(), 'edge-dry-run-'));

afterAll(() => rmSync(outDir, { recursive: true, force: true }));

describe('deployable size', () => {
  it('bundles the worker (wrangler deploy --dry-run) under 1 MiB gzip', () => {
    const wrangler = path.join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
    const result = spawnSync(process.execPath, [wrangler, 'deploy', '--dry-run', '--outdir', outDir], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: 'true' },
    });
    expect(result.status, result.stderr || result.stdout).toBe(0);
    const modules = readdirSync(outDir).filter((name) => !name.endsWith('.map') && name !== 'README.md');
    expect(modules).toContain('index.js');
    const gzipBytes = modules.reduce((sum, name) => sum + gzipSync(readFileSync(path.join(outDir, name))).length, 0);
    console.log(`worker bundle: ${modules.join(', ')}, ${(gzipBytes / 1024).toFixed(1)} KiB gzip (limit ${FREE_PLAN_GZIP_BYTES / 1024} KiB)`);
    expect(gzipBytes).toBeLessThan(FREE_PLAN_GZIP_BYTES);
    // The page is served as static assets, never bundled into the script.
    expect(readFileSync(path.join(outDir, 'index.js'), 'utf8')).not.toContain('system-prompt-names"></datalist>');
  }, 120_000);

  it('keeps the playground page a handful of small files with no third-party code', () => {
    const files = readdirSync(PAGE_DIR);
    const bytes = files.reduce((sum, name) => sum + statSync(path.join(PAGE_DIR, name)).size, 0);
    expect(files.length).toBeLessThanOrEqual(8);
    expect(bytes).toBeLessThan(48 * 1024);
    for (const name of files.filter((f) => /\.(html|js|css)$/.test(f))) {
      // Everything is same-origin: no CDN, no remote font, script or image, so the page works offline.
      expect(readFileSync(path.join(PAGE_DIR, name), 'utf8'), name).not.toMatch(/https?:\/\/|["'(]\/\/|url\(/);
    }
  });
});
