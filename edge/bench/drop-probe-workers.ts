// The small workers that `npm run bench:drops -- --workers ...` serves beside ours, each one step closer to the
// edge's streaming (stream-generation.ts), to find which step makes workerd lose a dropped stream. All live in
// one module, chosen by the request path; GET /ends reports how each variant's streams ended.

/** Steps, in order: each adds one thing ours does to the one before it. */
export const PROBE_VARIANTS = {
  gen: 'chunks generated in the isolate (setTimeout 0 between enqueues)',
  fetch: "fed from a fetch subrequest's body (a local SSE server), one enqueue per upstream chunk",
  hold: "fetch + ctx.waitUntil(ended), the context hold that ours keeps until the session's finish",
  burst: 'hold + each upstream chunk parsed into SSE events, re-encoded as one enqueue per event (as ours)',
  full: 'burst + a request.signal abort listener and a 15 s heartbeat interval (as ours)',
  yield: 'full + a wait on a timer (setTimeout 0) after each enqueue, as ours since this was found',
} as const;

/** Module source; `env.SSE_URL` is the local SSE server that streams like the backend. */
export const PROBE_WORKER = `
const ends = {};
const count = (variant, how) => { ends[variant] ??= { started: 0, cancelled: 0, completed: 0, signal: 0 }; ends[variant][how]++; };
const encoder = new TextEncoder();
const GEN_CHUNK = encoder.encode('data: ' + 'x'.repeat(150) + '\\n\\n');

function generated(variant, ctx) {
  let done = false;
  return new ReadableStream({
    start(controller) {
      ctx.waitUntil((async () => {
        for (let i = 0; i < 400 && !done; i++) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          try { controller.enqueue(GEN_CHUNK); } catch { if (!done) count(variant, 'cancelled'); done = true; }
        }
        if (!done) { done = true; controller.close(); count(variant, 'completed'); }
      })());
    },
    cancel() { if (!done) { done = true; count(variant, 'cancelled'); } },
  });
}

/** One chat.completion.chunk-sized SSE event per upstream event, each its own enqueue. */
function reencode(text, pending) {
  const events = (pending.text + text).split('\\n\\n');
  pending.text = events.pop();
  return events.map((event) => {
    const data = JSON.parse(event.slice(event.indexOf('data: ') + 6));
    const chunk = { id: 'chatcmpl-probe', object: 'chat.completion.chunk', created: 0, model: 'probe',
      choices: [{ index: 0, delta: { content: String(data.tokenIds[0]) }, logprobs: null, finish_reason: null }] };
    return encoder.encode('data: ' + JSON.stringify(chunk) + '\\n\\n');
  });
}

async function relayed(variant, request, env, ctx) {
  const upstream = new AbortController();
  const response = await fetch(env.SSE_URL + '/' + variant, { signal: upstream.signal });
  let done = false;
  let heartbeat = null;
  let markEnded;
  const ended = new Promise((resolve) => (markEnded = resolve));
  const finish = (how) => {
    if (done) return;
    done = true;
    count(variant, how);
    if (heartbeat !== null) clearInterval(heartbeat);
    upstream.abort();
    markEnded();
  };
  if (variant !== 'fetch') ctx.waitUntil(ended);
  const full = variant === 'full' || variant === 'yield';
  if (full) request.signal.addEventListener('abort', () => finish('signal'), { once: true });
  const perEvent = variant === 'burst' || full;
  return new ReadableStream({
    start(controller) {
      if (full) heartbeat = setInterval(() => { try { controller.enqueue(encoder.encode(': ping\\n\\n')); } catch {} }, 15000);
      ctx.waitUntil((async () => {
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        const pending = { text: '' };
        try {
          for (;;) {
            const { done: upstreamDone, value } = await reader.read();
            if (done) return;
            if (upstreamDone) break;
            const chunks = perEvent ? reencode(decoder.decode(value, { stream: true }), pending) : [value];
            for (const chunk of chunks) {
              controller.enqueue(chunk);
              if (variant === 'yield') await new Promise((resolve) => setTimeout(resolve, 0));
            }
          }
          controller.enqueue(encoder.encode('data: [DONE]\\n\\n'));
          controller.close();
          finish('completed');
        } catch {
          finish('cancelled');
        } finally {
          if (done) await reader.cancel().catch(() => {});
        }
      })());
    },
    cancel() { finish('cancelled'); },
  });
}

export default {
  async fetch(request, env, ctx) {
    const variant = new URL(request.url).pathname.slice(1);
    if (variant === 'ends') return Response.json(ends);
    count(variant, 'started');
    const body = variant === 'gen' ? generated(variant, ctx) : await relayed(variant, request, env, ctx);
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  },
};`;
