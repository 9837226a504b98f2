// Where the tests' fixtures live (../shared/fixtures beside this repository, or FIXTURES_DIR), and the
// one-line check `npm test` runs first, so a missing folder is named instead of failing test by test.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const FIXTURES_DIR = path.resolve(process.env.FIXTURES_DIR || path.join(REPO_ROOT, '..', 'shared', 'fixtures'));

/** Entries the tests read; one missing means a wrong or partial folder. */
const REQUIRED = ['stories260k/config.json', 'stories260k-swa16', 'tokenizer/tokenizer.model.v1', 'tokenizer/published-vectors.json'];

/** null when the fixtures are there; otherwise the line to print. */
export function missingFixturesMessage(): string | null {
  const missing = REQUIRED.filter((entry) => !existsSync(path.join(FIXTURES_DIR, entry)));
  if (missing.length === 0) return null;
  const what = existsSync(FIXTURES_DIR) ? `${FIXTURES_DIR} lacks ${missing.join(', ')}` : `${FIXTURES_DIR} does not exist`;
  return `test fixtures not found: ${what} (expected the shared fixtures folder beside this repository, ../shared/fixtures; set FIXTURES_DIR=/path/to/fixtures to use another)`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const message = missingFixturesMessage();
  if (message) {
    console.error(message);
    process.exit(1);
  }
}
