// BackendConfig: defaults in one place, every bad value named by its flag or environment variable.

import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULTS, USAGE, backendConfigFrom, servingLimits } from './config';

const MODEL = ['--model', 'some/checkpoint'];

describe('backendConfigFrom', () => {
  it('fills every default when only --model is given', () => {
    const config = backendConfigFrom(MODEL, {});
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 8000,
      drainSeconds: 30,
      logLevel: 'info',
      backendToken: undefined,
      executionProvider: 'cpu',
      runtime: undefined,
      cudaGraphs: false,
      dtype: 'fp32',
      kvCacheDtype: 'auto',
      int4BlockSize: 64,
      intraOpThreads: os.availableParallelism(),
      onnxCacheDir: path.resolve('.models/onnx-cache'),
      profilePrefix: undefined,
      maxSequences: undefined,
      defaultSequences: 16,
      kvMemoryGib: undefined,
      maxModelLen: undefined,
      chunkSize: undefined,
      speculativeTokens: 0,
      limits: {},
      model: { kind: 'checkpoint', modelDir: 'some/checkpoint' },
      modelId: undefined,
    });
  });

  it('takes --model-id as written, and refuses one clients could not send back', () => {
    expect(backendConfigFrom([...MODEL, '--model-id', 'mistralai/Mistral-7B-Instruct-v0.3'], {}).modelId).toBe('mistralai/Mistral-7B-Instruct-v0.3');
    for (const bad of ['', 'two words', 'model@prompt', '-leading-dash', 'x'.repeat(129), 'tab\there']) {
      expect(() => backendConfigFrom([...MODEL, `--model-id=${bad}`], {}), bad).toThrow(/--model-id must be/);
    }
  });

  it('reads the environment: port, log level, token, cache folder, profile prefix', () => {
    const env = { BACKEND_PORT: '9001', LOG_LEVEL: 'debug', BACKEND_TOKEN: 's3cret', MODEL_ONNX_CACHE_DIR: '/tmp/graphs', RESIDENT_KV_PROFILE: '/tmp/p' };
    const config = backendConfigFrom(['--fake-engine'], env);
    expect(config).toMatchObject({ port: 9001, logLevel: 'debug', backendToken: 's3cret', onnxCacheDir: '/tmp/graphs', profilePrefix: '/tmp/p' });
    expect(config.model).toEqual({ kind: 'fake' });
    // Flags win over the environment.
    expect(backendConfigFrom(['--fake-engine', '--port', '0', '--log-level', 'info'], env)).toMatchObject({ port: 0, logLevel: 'info' });
  });

  it('takes the flags into typed values and the scheduler limits', () => {
    const argv = [...MODEL, '--ep', 'webgpu', '--dtype', 'int4', '--int4-block-size', '128', '--max-running', '8', '--prefix-cache-size', '12'];
    const config = backendConfigFrom([...argv, '--prefill-stall-factor', '0.5', '--kv-memory-gib', '1.5', '--threads', '3', '--runtime', 'native'], {});
    expect(config).toMatchObject({ executionProvider: 'webgpu', runtime: 'native', dtype: 'int4', int4BlockSize: 128, intraOpThreads: 3, kvMemoryGib: 1.5 });
    expect(config.limits).toEqual({ maxRunning: 8, prefixCacheSize: 12, prefillStallFactor: 0.5 });
    expect(config.defaultSequences).toBe(20); // max running + prefix-cache size, above the floor of 16
    expect(backendConfigFrom(['--default-model'], {}).model).toEqual({ kind: 'default' });
    // CUDA defaults to the native session (the KV cache stays on the device); an explicit flag still wins.
    expect(backendConfigFrom([...MODEL, '--ep', 'cuda'], {}).runtime).toBe('native');
    expect(backendConfigFrom([...MODEL, '--ep', 'cuda', '--runtime', 'js'], {}).runtime).toBe('js');
    // The CPU's default depends on the model (runtime-choice.ts): left undefined until its config is read.
    expect(backendConfigFrom([...MODEL, '--ep', 'cpu'], {}).runtime).toBeUndefined();
    expect(backendConfigFrom([...MODEL, '--ep', 'webgpu'], {}).runtime).toBe('js');
    expect(backendConfigFrom([...MODEL, '--ep', 'cpu', '--runtime', 'js'], {}).runtime).toBe('js');
    // CUDA graphs follow the native session on cuda unless turned off; asked for elsewhere, refused.
    expect(backendConfigFrom([...MODEL, '--ep', 'cuda'], {}).cudaGraphs).toBe(true);
    expect(backendConfigFrom([...MODEL, '--ep', 'cuda', '--cuda-graphs', 'off'], {}).cudaGraphs).toBe(false);
    expect(backendConfigFrom([...MODEL, '--ep', 'cuda', '--runtime', 'js'], {}).cudaGraphs).toBe(false);
    expect(() => backendConfigFrom([...MODEL, '--cuda-graphs', 'on'], {})).toThrow('--cuda-graphs on needs --ep cuda with --runtime native');
    expect(() => backendConfigFrom([...MODEL, '--cuda-graphs', 'yes'], {})).toThrow('--cuda-graphs must be one of on, off');
  });

  it('speculative decoding: off by default, --speculative ngram with --spec-tokens K reaches the engine and the scheduler', () => {
    expect(backendConfigFrom(MODEL, {}).speculativeTokens).toBe(0);
    const config = backendConfigFrom([...MODEL, '--speculative', 'ngram', '--spec-tokens', '6'], {});
    expect(config.speculativeTokens).toBe(6);
    expect(config.limits).toEqual({ speculativeTokens: 6 });
    expect(backendConfigFrom([...MODEL, '--speculative', 'ngram'], {}).speculativeTokens).toBe(4);
    expect(() => backendConfigFrom([...MODEL, '--spec-tokens', '3'], {})).toThrow('--spec-tokens needs --speculative ngram');
    expect(() => backendConfigFrom([...MODEL, '--speculative', 'eagle'], {})).toThrow('--speculative must be one of off, ngram');
  });

  it.each([
    [['--ep', 'tpu'], {}, '--ep must be one of cpu, cuda, webgpu, got "tpu"'],
    [['--dtype', 'int8'], {}, '--dtype must be one of fp32, fp16, int4'],
    [['--runtime', 'wasm'], {}, '--runtime must be one of js, native, got "wasm"'],
    [['--int4-block-size', '48'], {}, '--int4-block-size must be one of 16, 32, 64, 128, 256, got "48"'],
    [['--port', '70000'], {}, '--port must be an integer from 0 to 65535, got "70000"'],
    [[], { BACKEND_PORT: 'eighty' }, 'BACKEND_PORT must be an integer from 0 to 65535, got "eighty"'],
    [[], { LOG_LEVEL: 'verbose' }, 'LOG_LEVEL must be one of info, debug, got "verbose"'],
    [['--max-running', '0'], {}, '--max-running must be an integer from 1'],
    [['--max-queue', ''], {}, '--max-queue must be an integer from 0'],
    [['--threads', '2.5'], {}, '--threads must be an integer from 1 to 1024'],
    [['--prefill-stall-factor', 'fast'], {}, '--prefill-stall-factor must be a number from 0 to 100'],
    [['--kv-memory-gib', '0'], {}, '--kv-memory-gib must be a positive number, got "0"'],
    [['--bogus'], {}, "Unknown option '--bogus'"],
  ])('%j %j is refused naming the setting', (argv, env, message) => {
    expect(() => backendConfigFrom([...MODEL, ...argv], env)).toThrow(ConfigError);
    expect(() => backendConfigFrom([...MODEL, ...argv], env)).toThrow(message);
  });

  it('asks for --model last, so a bad flag without one is named first', () => {
    expect(() => backendConfigFrom([], {})).toThrow('--model DIR is required');
    expect(() => backendConfigFrom(['--ep', 'tpu'], {})).toThrow('--ep');
  });

  it('--help states the defaults the config applies', () => {
    expect(USAGE).toContain(`default ${DEFAULTS.host}, BACKEND_PORT or ${DEFAULTS.port}`);
    expect(USAGE).toContain('--int4-block-size N');
    expect(USAGE).toContain(`(default ${DEFAULTS.drainSeconds})`);
    expect(USAGE).toContain(`MODEL_ONNX_CACHE_DIR (default ${DEFAULTS.onnxCacheDir})`);
  });
});

describe('servingLimits', () => {
  it('derives what the operator left out from the engine rows', () => {
    expect(servingLimits(16)).toEqual({
      maxRunning: 16,
      maxBatchedTokens: 512,
      maxQueue: 64,
      prefixCacheSize: 4,
      prefixBlockTokens: 16,
      prefillStallFactor: 1.5,
      prefillMinTokens: 8,
      speculativeTokens: 0,
    });
    expect(servingLimits(3, { maxRunning: 2, maxQueue: 0 })).toMatchObject({ maxRunning: 2, maxQueue: 0, prefixCacheSize: 0, maxBatchedTokens: 512 });
  });
});
