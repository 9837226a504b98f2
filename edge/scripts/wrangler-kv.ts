// Operator commands' access to a KV binding through wrangler: local state (default, or --persist-to DIR,
// the same folder `wrangler dev --persist-to` uses) or the deployed namespace with --remote.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface KvTarget {
  binding: string;
  remote: boolean;
  persistTo?: string;
}

function wrangler(args: string[], target: KvTarget): string {
  const bin = path.join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
  if (!existsSync(bin)) throw new Error('wrangler is not installed: run `npm ci` first');
  const where = target.remote ? ['--remote'] : ['--local', ...(target.persistTo ? ['--persist-to', path.resolve(target.persistTo)] : [])];
  const result = spawnSync(process.execPath, [bin, 'kv', 'key', ...args, '--binding', target.binding, ...where], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
  });
  if (result.status !== 0) throw new Error(`wrangler kv key ${args[0]} failed:\n${result.stderr || result.stdout}`);
  return result.stdout;
}

export function kvPut(target: KvTarget, key: string, value: string): void {
  wrangler(['put', key, value], target);
}

/** A local get of a missing key exits 0 and prints this; the values these commands store are JSON, never it. */
const LOCAL_MISSING = 'Value not found\n';

export function kvGet(target: KvTarget, key: string): string | null {
  try {
    const value = wrangler(['get', key, '--text'], target);
    return value === LOCAL_MISSING ? null : value;
  } catch {
    return null;
  }
}

export function kvDelete(target: KvTarget, key: string): void {
  wrangler(['delete', key], target);
}

export function kvList(target: KvTarget, prefix: string): string[] {
  const out = wrangler(['list', '--prefix', prefix], target);
  const start = out.indexOf('[');
  const parsed = JSON.parse(start === -1 ? '[]' : out.slice(start)) as { name: string }[];
  return parsed.map((entry) => entry.name);
}

/** Pulls `--remote` and `--persist-to DIR` out of argv. */
export function kvTargetFrom(argv: string[], binding: string): { target: KvTarget; rest: string[] } {
  const rest: string[] = [];
  const target: KvTarget = { binding, remote: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--remote') target.remote = true;
    else if (argv[i] === '--persist-to') target.persistTo = argv[++i];
    else rest.push(argv[i]);
  }
  return { target, rest };
}
