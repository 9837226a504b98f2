// The documentation stays true to the tree: every relative link (and #anchor) resolves, every `npm run X`
// names a package.json script, and every flag the backend's and `npm start`'s --help print is documented.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../scripts/stack';

const SKIPPED_DIRS = new Set(['node_modules', '.models', '.wrangler', 'dist', 'bench-results', 'test-artifacts', 'pack', 'build', 'ort']);

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.name.startsWith('.') || SKIPPED_DIRS.has(entry.name)) return [];
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return markdownFiles(full);
    return entry.name.endsWith('.md') ? [full] : [];
  });
}

/** Text outside fenced code blocks and inline code spans, where links are links. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, 'code');
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const match of markdown.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} +(.+?) *$/gm)) {
    const slug = (match[1] ?? '')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    result.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return result;
}

const files = markdownFiles(REPO_ROOT);
const read = (file: string) => readFileSync(file, 'utf8');

function helpFlags(script: string): string[] {
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, script), '--help'], { cwd: REPO_ROOT, encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  return [...new Set(result.stdout.match(/--[a-z][a-z0-9-]+/g) ?? [])];
}

describe('documentation', () => {
  it('finds the READMEs', () => {
    const relative = files.map((file) => path.relative(REPO_ROOT, file));
    expect(relative).toEqual(expect.arrayContaining(['README.md', 'gpu-backend/README.md', 'docs/bench/README.md', 'docs/device/README.md']));
  });

  it('has relative links and anchors that resolve', () => {
    const broken: string[] = [];
    for (const file of files) {
      for (const match of prose(read(file)).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1] ?? '';
        if (/^[a-z]+:/.test(target)) continue;
        const [pathPart = '', anchor] = target.split('#');
        const resolved = pathPart === '' ? file : path.resolve(path.dirname(file), pathPart);
        const where = `${path.relative(REPO_ROOT, file)}: ${target}`;
        if (!existsSync(resolved)) broken.push(`${where} (no such file)`);
        else if (anchor !== undefined && statSync(resolved).isFile() && resolved.endsWith('.md') && !anchors(read(resolved)).has(anchor)) {
          broken.push(`${where} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('names only npm scripts that exist', () => {
    const scripts = Object.keys((JSON.parse(read(path.join(REPO_ROOT, 'package.json'))) as { scripts: Record<string, string> }).scripts);
    const missing = files.flatMap((file) =>
      [...read(file).matchAll(/npm run (?:-s )?([a-z][\w:-]*)/g)]
        .map((match) => match[1] ?? '')
        .filter((name) => !scripts.includes(name))
        .map((name) => `${path.relative(REPO_ROOT, file)}: npm run ${name}`),
    );
    expect(missing).toEqual([]);
  });

  it('documents every backend flag in gpu-backend/README.md', () => {
    const readme = read(path.join(REPO_ROOT, 'gpu-backend/README.md'));
    const flags = helpFlags('gpu-backend/src/main.ts').filter((flag) => flag !== '--help');
    expect(flags).toContain('--model');
    expect(flags.filter((flag) => !new RegExp(`\`${flag}[ \`\\\\]`).test(readme))).toEqual([]);
  });

  it('uses only flags that npm start knows', () => {
    const known = helpFlags('scripts/start.ts');
    const used = files.flatMap((file) =>
      [...read(file).matchAll(/npm start -- ((?:--[a-z][a-z0-9-]*(?: [^\s`-][^\s`]*)? ?)+)/g)].flatMap((match) => match[1]?.match(/--[a-z][a-z0-9-]*/g) ?? []),
    );
    expect(used).toContain('--model');
    expect([...new Set(used)].filter((flag) => !known.includes(flag))).toEqual([]);
  });
});
