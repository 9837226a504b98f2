// One local stack (backend + wrangler dev) for an end-to-end test file: free ports, wrangler state of its own,
// a fresh dev key, one backend thread, the built-in model; its log lines go to `log`, and a start that fails
// says why with the last of them.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { freePort, generateApiKey, startStack, type Stack, type StackOptions } from '../scripts/stack';

export async function startTestStack(label: string, log: string[], options: Partial<StackOptions> = {}): Promise<Stack> {
  const edgePort = options.edgePort ?? (await freePort());
  return startStack({
    modelDir: options.modelDir ?? (await ensureDefaultModel(DEFAULT_MODEL_DIR)),
    backendPort: await freePort(),
    edgePort,
    persistTo: options.persistTo ?? mkdtempSync(path.join(tmpdir(), `${label}-${edgePort}-`)),
    apiKey: generateApiKey(),
    inspectorPort: 0,
    backendArgs: ['--threads', '1'],
    log: (line) => log.push(line),
    ...options,
  }).catch((error: Error) => {
    throw new Error(`${error.message}\n${log.slice(-30).join('\n')}`);
  });
}
