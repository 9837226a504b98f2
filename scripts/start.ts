// `npm start`: the backend and the edge worker on this machine, with a local API key and a curl to paste.

import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/default-model';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { generateApiKey, REPO_ROOT, startStack } from './stack';

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    console.error(`${name} must be a port number (1-65535), got "${raw}"`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { model: { type: 'string' }, threads: { type: 'string' }, dtype: { type: 'string' } },
    strict: true,
  });
  const backendPort = port('BACKEND_PORT', 8000);
  const edgePort = port('EDGE_PORT', 8787);
  const apiKey = process.env.DEV_API_KEY || generateApiKey();

  let modelDir = values.model;
  if (!modelDir) {
    console.error('No --model given: serving the built-in tiny model with RANDOM weights (its output is gibberish).');
    modelDir = await ensureDefaultModel(DEFAULT_MODEL_DIR);
  }
  // The edge bundles the served model's tokenizer (the built-in v1 one for the default model).
  if (values.model && !existsSync(path.join(values.model, 'config.json'))) {
    console.error(`--model ${values.model}: no config.json there (expected a Hugging Face checkpoint folder: config.json + *.safetensors)`);
    process.exit(2);
  }
  const ownTokenizer = values.model && ['tokenizer.model', 'tokenizer.json'].some((f) => existsSync(path.join(values.model!, f)));
  if (values.model && !ownTokenizer) {
    // The built-in tokenizer is Mistral v1 (32000 ids); another vocabulary would get ids it cannot embed.
    const vocabSize = (JSON.parse(readFileSync(path.join(values.model, 'config.json'), 'utf8')) as { vocab_size?: unknown }).vocab_size;
    if (vocabSize !== 32000) {
      console.error(`${values.model} has no tokenizer.model or tokenizer.json and its vocab_size is ${String(vocabSize)}, not Mistral v1's 32000: add the model's tokenizer to the folder (the backend alone, token ids only: npm run backend -- --model ${values.model})`);
      process.exit(2);
    }
    console.error(`${values.model} has no tokenizer.model or tokenizer.json: using the built-in Mistral v1 tokenizer.`);
  }
  const tokenizerArgs = ['--import', 'tsx', 'edge/scripts/build-tokenizer.ts', ...(ownTokenizer ? ['--model-dir', values.model!] : [])];
  const built = spawnSync(process.execPath, tokenizerArgs, { cwd: REPO_ROOT, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);

  const backendArgs: string[] = [];
  if (values.threads) backendArgs.push('--threads', values.threads);
  if (values.dtype) backendArgs.push('--dtype', values.dtype);
  const stack = await startStack({ modelDir, backendPort, edgePort, apiKey, backendArgs });

  const model = stack.modelInfo.modelId;
  console.log(`
  backend  ${stack.backendUrl}   (model ${model}, CPU)
  edge     ${stack.edgeUrl}   (OpenAI-compatible: ${stack.edgeUrl}/v1)
  API key  ${apiKey}
  page     ${stack.edgeUrl}/   (the playground: open it in a browser, paste the key)

  curl -N ${stack.edgeUrl}/v1/chat/completions \\
    -H "Authorization: Bearer ${apiKey}" -H "Content-Type: application/json" \\
    -d '{"model":"${model}","stream":true,"max_tokens":32,"messages":[{"role":"user","content":"Tell me a story."}]}'

  Ctrl-C stops both.
`);
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    void stack.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((error: Error) => {
  console.error(`npm start failed: ${error.message}`);
  process.exit(1);
});
