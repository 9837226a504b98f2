// A wrangler config for one local edge that bundles another tokenizer asset than edge/generated/tokenizer.json:
// wrangler.toml with absolute paths plus an `alias` for the asset's import, so stacks serving models with
// different vocabularies (a v1 and a v3 end-to-end test) can run side by side without rewriting the shared file.

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The specifier edge/src/tokenizer/default-tokenizer.ts imports the asset by; wrangler's alias matches it exactly. */
const ASSET_IMPORT = '../../generated/tokenizer.json';

interface RawConfig {
  main?: string;
  assets?: { directory?: string };
  alias?: Record<string, string>;
}

/** Writes the config to `configPath` (JSON, which wrangler reads like TOML) and returns that path. */
export async function writeEdgeWranglerConfig(configPath: string, tokenizerAsset: string): Promise<string> {
  // Loaded only here: wrangler's module takes seconds to import, and only stacks with their own asset need it.
  const { experimental_readRawConfig } = await import('wrangler');
  const { rawConfig } = experimental_readRawConfig({ config: path.join(REPO_ROOT, 'wrangler.toml') }) as { rawConfig: RawConfig };
  if (!rawConfig.main || !rawConfig.assets?.directory) throw new Error('wrangler.toml: expected `main` and `[assets] directory`');
  // Relative paths in a config resolve against its own folder, which is not the repository root here.
  const config = {
    ...rawConfig,
    main: path.join(REPO_ROOT, rawConfig.main),
    assets: { ...rawConfig.assets, directory: path.join(REPO_ROOT, rawConfig.assets.directory) },
    alias: { ...rawConfig.alias, [ASSET_IMPORT]: path.resolve(tokenizerAsset) },
  };
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  return configPath;
}
