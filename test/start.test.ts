// `npm start` as a user runs it (scripts/start.ts as a child process, the real backend and wrangler dev):
// busy ports are refused before anything is written, Ctrl-C lets open streams end, a dead backend is
// restarted (and ends the stack when restarts are switched off), --model builtin-v3 serves tool calls,
// --model-id names the served model.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freeEdgePort, freePort, REPO_ROOT } from '../scripts/stack';

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  waitForOutput: (pattern: RegExp) => Promise<RegExpExecArray>;
}

const started: Started[] = [];
const edgePids: number[] = [];

/** scripts/start.ts in a process group of its own, as a terminal runs it (Ctrl-C = SIGINT to the group). */
function startProcess(env: Record<string, string>, args: string[] = []): Started {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/start.ts'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  const waiters: (() => void)[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      output += chunk;
      for (const waiter of waiters.slice()) waiter();
    });
  }
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitForOutput = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(output);
        if (match) resolve(match);
      };
      waiters.push(check);
      check();
      void exited.then((code) => reject(new Error(`npm start exited (${code}) before printing ${pattern}:\n${output}`)));
    });
  const entry = { child, output: () => output, exited, waitForOutput };
  started.push(entry);
  return entry;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

afterEach(() => {
  for (const { child } of started.splice(0)) if (child.exitCode === null) killGroup(child.pid);
  for (const pid of edgePids.splice(0)) killGroup(pid);
});

async function bannerOf(run: Started) {
  await run.waitForOutput(/Ctrl-C stops both/);
  const text = run.output();
  const edgePid = Number(/edge .*pid (\d+)/.exec(text)![1]);
  edgePids.push(edgePid);
  return {
    edgeUrl: /edge\s+(http:\/\/\S+)/.exec(text)![1],
    backendUrl: /backend\s+(http:\/\/\S+)/.exec(text)![1],
    backendPid: Number(/backend .*pid (\d+)/.exec(text)![1]),
    edgePid,
    text,
  };
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start', () => {
  it.each(['BACKEND_PORT', 'EDGE_PORT'])(
    'refuses a %s already in use with a clear message and a non-zero exit, writing nothing',
    async (busy) => {
      // A server that answers every request with 200, as a running stack would.
      const squatter: Server = createHttpServer((_req, res) => res.end('{}'));
      await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
      const busyPort = (squatter.address() as { port: number }).port;
      try {
        const edgePort = busy === 'EDGE_PORT' ? busyPort : await freeEdgePort();
        const backendPort = busy === 'BACKEND_PORT' ? busyPort : await freePort();
        const run = startProcess({ BACKEND_PORT: String(backendPort), EDGE_PORT: String(edgePort) });
        expect(await run.exited).not.toBe(0);
        expect(run.output()).toContain(`port ${busyPort} (${busy}) is already in use`);
        expect(run.output()).not.toContain('API key');
        expect(existsSync(path.join(REPO_ROOT, '.wrangler', 'stack', `edge-${edgePort}.env`))).toBe(false);
      } finally {
        squatter.close();
      }
    },
    120_000,
  );

  it('honours BACKEND_TOKEN, tells how to read the metrics, and on Ctrl-C lets an open stream end with [DONE] or an in-band error', async () => {
    const run = startProcess(
      {
        BACKEND_PORT: String(await freePort()),
        EDGE_PORT: String(await freeEdgePort()),
        BACKEND_TOKEN: 'token-from-the-environment',
        DEV_API_KEY: 'sk-local-start-test',
      },
      ['--threads', '1'],
    );
    const { edgeUrl, backendUrl, text } = await bannerOf(run);
    expect(text).toContain(`backend metrics: curl -H 'Authorization: Bearer $BACKEND_TOKEN' ${backendUrl}/metrics`);
    expect(text).toContain(`edge metrics:    curl -H 'Authorization: Bearer sk-local-start-test' ${edgeUrl}/metrics`);
    const metrics = await fetch(`${backendUrl}/metrics`, { headers: { authorization: 'Bearer token-from-the-environment' } });
    expect(metrics.status).toBe(200);
    expect(Number(/^backend_kv_slots_free (\d+)$/m.exec(await metrics.text())![1])).toBeGreaterThan(0);

    const response = await fetch(`${edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-local-start-test', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mistral-tiny-random', stream: true, max_tokens: 2000, ignore_eos: true, messages: [{ role: 'user', content: 'Count.' }] }),
    });
    expect(response.status).toBe(200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = '';
    while (!body.includes('"content":"')) body += (await reader.read()).value ?? '';
    const beforeSignal = body.length;
    process.kill(-run.child.pid!, 'SIGINT');
    for (;;) {
      const { done, value } = await reader.read(); // a cut connection rejects here ("terminated")
      if (done) break;
      body += value;
    }
    expect(body.length).toBeGreaterThan(beforeSignal); // still streaming when the signal came
    const ending = body.trimEnd().split('\n\n').at(-1)!;
    const inBandError = ending.includes('"error"') || body.split('\n\n').at(-2)?.includes('"error"');
    expect(ending === 'data: [DONE]' || inBandError, ending).toBe(true);
    expect(await run.exited).toBe(0);
  }, 240_000);

  it('--model-id names the model clients send and /v1/models lists; a bad one exits 2 naming the flag', async () => {
    const refused = startProcess({ BACKEND_PORT: String(await freePort()), EDGE_PORT: String(await freeEdgePort()) }, ['--model-id', 'tiny@prompt']);
    expect(await refused.exited).toBe(2);
    expect(refused.output()).toContain('--model-id must be');
    expect(refused.output()).not.toContain('API key');

    const run = startProcess({ BACKEND_PORT: String(await freePort()), EDGE_PORT: String(await freeEdgePort()), DEV_API_KEY: 'sk-local-model-id' }, [
      '--threads',
      '1',
      '--model-id',
      'acme/tiny-random-v1',
    ]);
    const { edgeUrl, text } = await bannerOf(run);
    expect(text).toContain('(model acme/tiny-random-v1,');
    expect(text).toContain('"model":"acme/tiny-random-v1"');
    const headers = { authorization: 'Bearer sk-local-model-id', 'content-type': 'application/json' };
    const models = (await (await fetch(`${edgeUrl}/v1/models`, { headers })).json()) as { data: { id: string }[] };
    expect(models.data.map((model) => model.id)).toEqual(['acme/tiny-random-v1']);
    const chat = (model: string) =>
      fetch(`${edgeUrl}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model, max_tokens: 2, messages: [{ role: 'user', content: 'Hi.' }] }),
      });
    const served = await chat('acme/tiny-random-v1');
    expect(served.status, await served.clone().text()).toBe(200);
    expect(((await served.json()) as { model: string }).model).toBe('acme/tiny-random-v1');
    // The folder's name is no longer an id of this stack.
    expect((await chat('mistral-tiny-random')).status).toBe(404);
  }, 240_000);

  it('restarts a backend that dies, logs it, and serves through the same edge again', async () => {
    const run = startProcess({ BACKEND_PORT: String(await freePort()), EDGE_PORT: String(await freeEdgePort()), DEV_API_KEY: 'sk-local-restart' }, [
      '--threads',
      '1',
    ]);
    const { backendPid, edgePid, edgeUrl } = await bannerOf(run);
    process.kill(backendPid, 'SIGKILL');
    await run.waitForOutput(/the backend was killed by SIGKILL; restarting it in 0\.5 s \(restart 1 of at most 5 in a row\)/);
    const [, newPid] = await run.waitForOutput(/the backend is back \(pid (\d+)\)/);
    expect(Number(newPid)).not.toBe(backendPid);
    expect(isAlive(edgePid)).toBe(true);
    const response = await fetch(`${edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-local-restart', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mistral-tiny-random', max_tokens: 4, messages: [{ role: 'user', content: 'Hi.' }] }),
    });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(((await response.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
    expect(run.child.exitCode).toBeNull();
  }, 240_000);

  it('with --backend-restarts 0, says so and exits 1 when the backend dies, stopping the edge', async () => {
    const run = startProcess({ BACKEND_PORT: String(await freePort()), EDGE_PORT: String(await freeEdgePort()) }, [
      '--threads',
      '1',
      '--backend-restarts',
      '0',
    ]);
    const { backendPid, edgePid } = await bannerOf(run);
    process.kill(backendPid, 'SIGKILL');
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('the backend was killed by SIGKILL; stopping the edge');
    expect(isAlive(edgePid)).toBe(false);
  }, 240_000);

  it('--model builtin-v3 serves the built-in v3 model: the printed curl gets a tool call, and the v1 tokenizer asset is left alone', async () => {
    const v1Asset = path.join(REPO_ROOT, 'edge', 'generated', 'tokenizer.json');
    const v1AssetWritten = () => (existsSync(v1Asset) ? statSync(v1Asset).mtimeMs : null);
    const before = v1AssetWritten();
    const run = startProcess({ BACKEND_PORT: String(await freePort()), EDGE_PORT: String(await freeEdgePort()), DEV_API_KEY: 'sk-local-builtin-v3' }, [
      '--model',
      'builtin-v3',
      '--threads',
      '1',
    ]);
    const { edgeUrl, text } = await bannerOf(run);
    expect(text).toContain('(model mistral-tiny-random-v3,');
    const body = /-d '(.+)'$/m.exec(text)![1]!;
    const response = await fetch(`${edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-local-builtin-v3', 'content-type': 'application/json' },
      body,
    });
    expect(response.status, await response.clone().text()).toBe(200);
    const { choices } = (await response.json()) as { choices: { finish_reason: string; message: { tool_calls: { function: { name: string } }[] } }[] };
    expect(choices[0]!.finish_reason).toBe('tool_calls');
    expect(choices[0]!.message.tool_calls.map((call) => call.function.name)).toEqual(['get_weather']);
    expect(v1AssetWritten()).toBe(before);
  }, 240_000);
});
