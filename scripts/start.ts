// `npm start`: the backend and the edge worker on this machine, with a local API key and a curl to paste.
// Refuses ports already in use, restarts a backend that dies (bounded backoff), exits 1 when the edge dies or
// the backend keeps dying, and on Ctrl-C lets the backend drain open streams before the edge stops.

import { parseArgs } from 'node:util';
import { modelIdFrom } from '../gpu-backend/src/config';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { prepareBuiltinV3Model } from './builtin-v3-model';
import { assertPortFree, type BackendRestartPolicy, generateApiKey, PortInUseError, REPO_ROOT, startStack, type Stack } from './stack';

/** A dead backend is restarted after 0.5, 1, 2, 4, 8 s; one that stayed up a minute starts the count again. */
const RESTARTS: Omit<BackendRestartPolicy, 'maxAttempts'> = { initialMs: 500, maxMs: 10_000, stableMs: 60_000 };
const DEFAULT_RESTART_ATTEMPTS = 5;

/** The --model value that serves the built-in v3 model instead of a folder (a folder of that name: ./builtin-v3). */
const BUILTIN_V3 = 'builtin-v3';
/** Mistral v3's vocabulary (7B v0.3, the built-in v3 model): the one with tool-call tokens. */
const V3_VOCAB_SIZE = 32768;

const USAGE = `Usage: npm start [-- --model DIR|builtin-v3] [--model-id NAME] [--dtype fp32|fp16|int4] [--threads N]

Starts the GPU backend (ONNX Runtime, CPU here) and the edge worker (wrangler dev, local) and prints a
local API key. Without --model it serves the built-in tiny model with random weights (gibberish output).

  --model DIR     a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.model)
  --model ${BUILTIN_V3}
                  the built-in tiny model with Mistral v3's vocabulary (v0.3's tool-call tokens), random
                  weights, no download: try function calling with tool_choice "required" or a named function
  --model-id NAME the model id clients send and /v1/models lists (default: the folder's name)
  --dtype D       weights as fp32 (default), fp16 or int4 (converted once, cached)
  --threads N     ONNX Runtime threads of the backend (default: the CPU count)
  --backend-restarts N   restarts in a row of a backend that dies before giving up (default ${DEFAULT_RESTART_ATTEMPTS}; 0: exit)
  -h, --help      this text

Environment: EDGE_PORT (8787), BACKEND_PORT (8000), DEV_API_KEY (default: a new key each start),
BACKEND_TOKEN (default: a new secret each start), MODEL_ONNX_CACHE_DIR, LOG_LEVEL (info|debug).
Ctrl-C stops both after open streams finish (up to 30 s); Ctrl-C twice stops at once.`;

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

/** Checks the model folder and builds the edge's tokenizer asset from it (the built-in v1 one for the default model). */
function buildTokenizer(model: string | undefined): void {
  if (model && !existsSync(path.join(model, 'config.json'))) {
    console.error(`--model ${model}: no config.json there (expected a Hugging Face checkpoint folder: config.json + *.safetensors)`);
    process.exit(2);
  }
  const ownTokenizer = model && ['tokenizer.model', 'tokenizer.json'].some((f) => existsSync(path.join(model, f)));
  if (model && !ownTokenizer) {
    // The built-in tokenizer is Mistral v1 (32000 ids); another vocabulary would get ids it cannot embed.
    const vocabSize = (JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8')) as { vocab_size?: unknown }).vocab_size;
    if (vocabSize !== 32000) {
      console.error(
        `${model} has no tokenizer.model or tokenizer.json and its vocab_size is ${String(vocabSize)}, not Mistral v1's 32000: add the model's tokenizer to the folder (the backend alone, token ids only: npm run backend -- --model ${model})`,
      );
      process.exit(2);
    }
    console.error(`${model} has no tokenizer.model or tokenizer.json: using the built-in Mistral v1 tokenizer.`);
  }
  const tokenizerArgs = ['--import', 'tsx', 'edge/scripts/build-tokenizer.ts', ...(ownTokenizer ? ['--model-dir', model] : [])];
  const built = spawnSync(process.execPath, tokenizerArgs, { cwd: REPO_ROOT, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
}

/** A chat body to paste; on a v3 model a forced tool call, which is what the built-in v3 model is for. */
function sampleBody(model: string, tools: boolean): string {
  const ask = (content: string) => `"messages":[{"role":"user","content":"${content}"}]`;
  if (!tools) return `{"model":"${model}","stream":true,"max_tokens":32,${ask('Tell me a story.')}}`;
  const parameters = '{"type":"object","properties":{"city":{"type":"string","maxLength":12}},"required":["city"]}';
  const tool = `{"type":"function","function":{"name":"get_weather","parameters":${parameters}}}`;
  return `{"model":"${model}","max_tokens":64,"tools":[${tool}],"tool_choice":"required","parallel_tool_calls":false,${ask('Weather in Paris?')}}`;
}

function banner(stack: Stack, tokenFromEnv: boolean): string {
  const model = stack.modelInfo.modelId;
  const token = tokenFromEnv ? '$BACKEND_TOKEN' : stack.backendToken;
  const tools = stack.modelInfo.vocabSize === V3_VOCAB_SIZE;
  return `
  backend  ${stack.backendUrl}   (model ${model}, CPU, pid ${stack.pids.backend})
  edge     ${stack.edgeUrl}   (OpenAI-compatible: ${stack.edgeUrl}/v1, pid ${stack.pids.edge})
  API key  ${stack.apiKey}
  page     ${stack.edgeUrl}/   (the playground: open it in a browser, paste the key)

  curl -N ${stack.edgeUrl}/v1/chat/completions \\
    -H "Authorization: Bearer ${stack.apiKey}" -H "Content-Type: application/json" \\
    -d '${sampleBody(model, tools)}'

  backend metrics: curl -H 'Authorization: Bearer ${token}' ${stack.backendUrl}/metrics
  edge metrics:    curl -H 'Authorization: Bearer ${stack.apiKey}' ${stack.edgeUrl}/metrics

  Ctrl-C stops both (open streams finish first).
`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'model-id': { type: 'string' },
      threads: { type: 'string' },
      dtype: { type: 'string' },
      'backend-restarts': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const restartAttempts = Number(values['backend-restarts'] ?? DEFAULT_RESTART_ATTEMPTS);
  if (!Number.isInteger(restartAttempts) || restartAttempts < 0) {
    console.error(`--backend-restarts must be a whole number of restarts (0 or more), got "${values['backend-restarts']}"`);
    process.exit(2);
  }
  let modelId: string | undefined;
  try {
    modelId = modelIdFrom(values['model-id'], '--model-id');
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
  const backendPort = port('BACKEND_PORT', 8000);
  const edgePort = port('EDGE_PORT', 8787);
  // Before anything writes: a running stack's tokenizer asset and env file stay untouched.
  await assertPortFree(backendPort, 'BACKEND_PORT');
  await assertPortFree(edgePort, 'EDGE_PORT');
  const apiKey = process.env.DEV_API_KEY || generateApiKey();
  const backendToken = process.env.BACKEND_TOKEN || undefined;

  let modelDir = values.model;
  let tokenizerAsset: string | undefined;
  if (values.model === BUILTIN_V3) {
    console.error('--model builtin-v3: the built-in tiny v3 model with RANDOM weights; tool_choice "required" or a named function gives valid calls.');
    ({ modelDir, tokenizerAsset } = await prepareBuiltinV3Model());
  } else {
    if (!modelDir) {
      console.error('No --model given: serving the built-in tiny model with RANDOM weights (its output is gibberish).');
      modelDir = await ensureDefaultModel(DEFAULT_MODEL_DIR);
    }
    buildTokenizer(values.model);
  }

  const backendArgs: string[] = [];
  if (values.threads) backendArgs.push('--threads', values.threads);
  if (values.dtype) backendArgs.push('--dtype', values.dtype);
  if (modelId) backendArgs.push('--model-id', modelId);
  let stopping = false;
  const stack = await startStack({
    modelDir,
    tokenizerAsset,
    backendPort,
    edgePort,
    apiKey,
    backendToken,
    backendArgs,
    edgeOwnProcessGroup: true,
    restartBackend: restartAttempts > 0 ? { ...RESTARTS, maxAttempts: restartAttempts } : undefined,
    onUnexpectedExit: (which, code, signal) => {
      if (stopping) return;
      stopping = true;
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const after = which === 'backend' && restartAttempts > 0 ? ` after ${restartAttempts} restarts in a row` : '';
      console.error(
        `\nnpm start: the ${which === 'backend' ? 'backend' : 'edge (wrangler dev)'} ${how}${after}; stopping the ${which === 'backend' ? 'edge' : 'backend'} and exiting.`,
      );
      void stack.stop().then(() => process.exit(1));
    },
  });
  // The edge runs in its own process group (so Ctrl-C reaches it only through stop()): never leave it behind.
  process.on('exit', () => stack.kill());
  console.log(banner(stack, backendToken !== undefined));

  let firstSignalAt = 0;
  const shutdown = (signal: string) => {
    // tsx relays a terminal's Ctrl-C to this process when it did not see it arrive within 30 ms: one key press
    // can come twice under load, so only a second press a moment later means "at once".
    if (stopping && Date.now() - firstSignalAt < 1_000) return;
    if (stopping) {
      console.error(`npm start: ${signal} again: stopping at once.`);
      stack.kill();
      process.exit(130);
    }
    stopping = true;
    firstSignalAt = Date.now();
    console.error('npm start: stopping: open streams finish first (the backend drains, up to 30 s), then the edge stops.');
    void stack.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((error: Error) => {
  console.error(error instanceof PortInUseError ? `npm start: ${error.message}` : `npm start failed: ${error.message}`);
  process.exit(1);
});
