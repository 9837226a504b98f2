// `npm run keys -- create|list|revoke|usage`: API keys in the API_KEYS KV namespace, stored as SHA-256 hashes.
// The secret is printed once at creation and never stored. `usage` asks a running edge (key-usage.ts).

import { parseArgs } from 'node:util';
import { generateKeyId, generateSecret, keyRecordSchema, kvKeyForHash, KEY_PREFIX, sha256Hex, type KeyRecord } from '../src/auth/api-key-store';
import { keyUsage } from './key-usage';
import { kvGet, kvList, kvPut, kvTargetFrom, type KvTarget } from './wrangler-kv';

const USAGE = `Usage:
  npm run keys -- create --label NAME --rpm 60 --tpm 100000 [--concurrent 4]
  npm run keys -- list
  npm run keys -- revoke <keyId>
  npm run keys -- usage <keyId> [--json] [--url URL]
Options of create, list, revoke: --remote (the deployed namespace; default: local wrangler state)
                                 --persist-to DIR (local state folder, as given to wrangler dev)
usage prints the key's billed totals and UTC days (--json: the raw body) from GET /admin/keys/<keyId>/usage
of a running edge, the numbers its RateLimiter keeps: by default the local stack (npm start) at
http://127.0.0.1:$EDGE_PORT (8787), or --url https://<your worker> (with --remote, --url is required).
It needs the operator key in ADMIN_API_KEY, or locally DEV_API_KEY (the key npm start printed);
the dev key's id is \`dev\`.`;

function positiveInt(name: string, raw: string | undefined, fallback?: number): number {
  if (raw === undefined) {
    if (fallback !== undefined) return fallback;
    throw new Error(`--${name} is required`);
  }
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got "${raw}"`);
  return value;
}

async function create(target: KvTarget, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { label: { type: 'string' }, rpm: { type: 'string' }, tpm: { type: 'string' }, concurrent: { type: 'string' } },
    strict: true,
  });
  const secret = generateSecret();
  const record: KeyRecord = {
    keyId: generateKeyId(),
    label: values.label ?? '',
    limits: { rpm: positiveInt('rpm', values.rpm), tpm: positiveInt('tpm', values.tpm), concurrent: positiveInt('concurrent', values.concurrent, 4) },
    created: new Date().toISOString(),
    revoked: false,
  };
  kvPut(target, kvKeyForHash(await sha256Hex(secret)), JSON.stringify(record));
  console.log(
    `Created ${record.keyId} (${record.label || 'no label'}): ${record.limits.rpm} req/min, ${record.limits.tpm} tokens/min, ${record.limits.concurrent} concurrent.`,
  );
  console.log(`\n  ${secret}\n\nThis secret is shown once; only its SHA-256 hash is stored.`);
}

function records(target: KvTarget): { kvKey: string; record: KeyRecord }[] {
  return kvList(target, KEY_PREFIX).flatMap((kvKey) => {
    const parsed = keyRecordSchema.safeParse(JSON.parse(kvGet(target, kvKey) ?? 'null'));
    return parsed.success ? [{ kvKey, record: parsed.data }] : [];
  });
}

function list(target: KvTarget): void {
  const all = records(target);
  if (all.length === 0) return console.log('No keys.');
  for (const { record } of all) {
    const { rpm, tpm, concurrent } = record.limits;
    console.log(
      `${record.keyId}\t${record.revoked ? 'REVOKED' : 'active '}\t${rpm} rpm\t${tpm} tpm\t${concurrent} concurrent\t${record.created}\t${record.label}`,
    );
  }
}

function revoke(target: KvTarget, keyId: string | undefined): void {
  if (!keyId) throw new Error('revoke needs a keyId (see `npm run keys -- list`)');
  const found = records(target).find((entry) => entry.record.keyId === keyId);
  if (!found) throw new Error(`no key with id ${keyId}`);
  kvPut(target, found.kvKey, JSON.stringify({ ...found.record, revoked: true }));
  console.log(`Revoked ${keyId}. Workers stop accepting it within a few seconds (per-isolate cache) plus KV propagation (~60 s when deployed).`);
}

async function usage(target: KvTarget, args: string[]): Promise<void> {
  if (target.persistTo) throw new Error('usage reads a running edge (the stack started on that state folder), not the folder: drop --persist-to');
  const { values, positionals } = parseArgs({ args, options: { json: { type: 'boolean' }, url: { type: 'string' } }, allowPositionals: true, strict: true });
  if (positionals.length > 1) throw new Error(`usage takes one keyId, got ${positionals.length}`);
  await keyUsage({ keyId: positionals[0], url: values.url, json: values.json ?? false, remote: target.remote, env: process.env });
}

async function main(): Promise<void> {
  if (process.argv.slice(2).some((arg) => arg === '--help' || arg === '-h')) {
    console.log(USAGE);
    return;
  }
  const { target, rest } = kvTargetFrom(process.argv.slice(2), 'API_KEYS');
  const [command, ...args] = rest;
  if (command === 'create') await create(target, args);
  else if (command === 'list') list(target);
  else if (command === 'revoke') revoke(target, args[0]);
  else if (command === 'usage') await usage(target, args);
  else {
    console.error(USAGE);
    process.exit(command ? 2 : 0);
  }
}

main().catch((error: Error) => {
  console.error(`keys: ${error.message}`);
  process.exit(1);
});
