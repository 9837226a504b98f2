// main.ts as a process: flag errors exit 2 naming the flag; a server on the fake engine streams, and
// SIGTERM lets a running stream finish, refuses new work, and exits 0.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SseParser } from '../../shared/sse';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.ts');
const node = (args: string[]) => [process.execPath, ['--import', 'tsx', MAIN, ...args]] as const;

describe('main.ts', () => {
  it.concurrent.each([
    [['--bogus'], 'bogus'],
    [['--fake-engine', '--ep', 'tpu'], '--ep'],
    [['--fake-engine', '--max-running', 'many'], '--max-running'],
    [['--fake-engine', '--kv-cache-dtype', 'fp8'], '--kv-cache-dtype'],
    [['--fake-engine', '--int4-block-size', '48'], '--int4-block-size'],
    [['--fake-engine', '--model-id', 'a@b'], '--model-id'],
    [[], '--model'],
  ])('%j exits 2 naming %s', async (args, flag) => {
    const [command, argv] = node(args);
    const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toContain(flag);
  });

  it('--model-id names the served model in the startup line and in /v1/model', async () => {
    const [command, argv] = node(['--fake-engine', '--port', '0', '--model-id', 'acme/tiny-v1']);
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      let stdout = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /listening on (http:\/\/[^:]+:\d+)/.exec(stdout);
          if (match) resolve(match[1]);
        });
        child.on('exit', () => reject(new Error(`exited before listening: ${stdout}`)));
      });
      expect(stdout).toContain('model acme/tiny-v1');
      expect(((await (await fetch(`${url}/v1/model`)).json()) as { modelId: string }).modelId).toBe('acme/tiny-v1');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('serves, then drains on SIGTERM: the running stream finishes, new requests get 503, exit 0', async () => {
    const [command, argv] = node(['--fake-engine', '--port', '0', '--drain-seconds', '20']);
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BACKEND_TOKEN: 't0k' } });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /listening on (http:\/\/[^:]+:\d+)/.exec(stdout);
        if (match) resolve(match[1]);
      });
      child.on('exit', () => reject(new Error(`exited before listening: ${stdout}`)));
    });
    expect(stdout).toContain('model fake-mistral');
    const headers = { authorization: 'Bearer t0k', 'content-type': 'application/json' };
    const body = { requestId: 'r', tokenIds: [1, 2, 3], sampling: { maxTokens: 4000, ignoreEos: true }, stream: true };
    const response = await fetch(`${url}/v1/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
    const reader = response.body!.getReader();
    await reader.read(); // the stream is running
    child.kill('SIGTERM');
    while (!stderr.includes('draining')) await new Promise((resolve) => child.stderr.once('data', resolve));
    const refused = await fetch(`${url}/v1/generate`, { method: 'POST', headers, body: JSON.stringify({ ...body, stream: false }) });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('shutting_down');
    const parser = new SseParser();
    const events: string[] = [];
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      events.push(...parser.push(new TextDecoder().decode(chunk.value)).map((message) => message.event));
    }
    expect(events.at(-1)).toBe('end');
    expect(events.filter((event) => event === 'token').length).toBeGreaterThan(3000); // finished, not cut
    expect(await exited).toBe(0);
  });
});
