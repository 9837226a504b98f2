// The playground page: API key, model and system-prompt pickers, a streamed chat with Stop, and after each
// answer its timings, token counts and finish reason. Model output and server messages are only ever
// written as text (textContent / text nodes); the page's CSP enforces Trusted Types, so an HTML sink throws.

import { apiError, chatEvents, describeError, samplingFields } from './chat-stream.js';
import { scrollFollower } from './scroll-follower.js';

const KEY_STORAGE = 'mistral-edge-playground.api-key';

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
function element(id, type) {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`playground: #${id} is missing`);
  return found;
}

const ui = {
  apiKey: element('api-key', HTMLInputElement),
  forgetKey: element('forget-key', HTMLButtonElement),
  model: element('model', HTMLSelectElement),
  systemPrompt: element('system-prompt', HTMLInputElement),
  promptNames: element('system-prompt-names', HTMLDataListElement),
  temperature: element('temperature', HTMLInputElement),
  topP: element('top-p', HTMLInputElement),
  maxTokens: element('max-tokens', HTMLInputElement),
  seed: element('seed', HTMLInputElement),
  stop: element('stop', HTMLTextAreaElement),
  jsonMode: element('json-mode', HTMLInputElement),
  messages: element('messages', HTMLOListElement),
  composer: element('composer', HTMLFormElement),
  prompt: element('prompt', HTMLTextAreaElement),
  send: element('send', HTMLButtonElement),
  stopButton: element('stop-button', HTMLButtonElement),
  newChat: element('new-chat', HTMLButtonElement),
  status: element('status', HTMLParagraphElement),
};

const follower = scrollFollower(ui.messages);

/** @type {{ role: 'user' | 'assistant', content: string }[]} */
let history = [];
/** @type {AbortController | null} */
let inFlight = null;
/** Bumped on every key change, so an answer for an older key is dropped. */
let keyVersion = 0;
/** Bumped by "New chat", so an answer still ending then stays out of the new conversation. */
let chatVersion = 0;

/** @param {string} text @param {'info' | 'error'} [kind] */
function setStatus(text, kind = 'info') {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

function apiKey() {
  return ui.apiKey.value.trim();
}

/** @param {string} path */
function getJson(path) {
  return fetch(path, { headers: { authorization: `Bearer ${apiKey()}` } });
}

async function loadModels() {
  try {
    await lookUpKey(++keyVersion);
  } catch (error) {
    setStatus(`Cannot reach the API: ${error instanceof Error ? error.message : String(error)}`, 'error');
  }
}

/** @param {number} version */
async function lookUpKey(version) {
  if (!apiKey()) {
    ui.model.replaceChildren();
    setStatus('Enter an API key to start (npm start prints a local one).');
    return;
  }
  const response = await getJson('/v1/models');
  if (version !== keyVersion) return;
  if (!response.ok) {
    ui.model.replaceChildren();
    setStatus(describeError(await apiError(response)), 'error');
    return;
  }
  const list = /** @type {{ data: { id: string }[] }} */ (await response.json());
  const chosen = ui.model.value;
  ui.model.replaceChildren(...list.data.map((model) => new Option(model.id, model.id, false, model.id === chosen)));
  setStatus(`Key accepted: ${list.data.length} model${list.data.length === 1 ? '' : 's'}.`);
  // Names of stored system prompts; an older edge without the listing just leaves the field free-form.
  const names = await getJson('/v1/system_prompts');
  if (version !== keyVersion || !names.ok) return;
  const prompts = /** @type {{ data: { id: string }[] }} */ (await names.json());
  ui.promptNames.replaceChildren(...prompts.data.map((entry) => new Option(entry.id, entry.id)));
}

/** @param {'user' | 'assistant' | 'error'} role @param {string} text */
function addMessage(role, text) {
  const item = document.createElement('li');
  item.className = `message ${role}`;
  const label = document.createElement('span');
  label.className = 'role';
  label.textContent = role;
  const content = document.createElement('div');
  content.className = 'content';
  content.append(document.createTextNode(text));
  item.append(label, content);
  if (role === 'error') item.setAttribute('role', 'alert');
  ui.messages.append(item);
  follower.update();
  return { item, content };
}

/**
 * @typedef {{ ttftMs: number | null, decodeMs: number | null, finish: string, usage: import('./chat-stream.js').Usage | null, limits: string | null }} AnswerStats
 * @param {HTMLElement} item
 * @param {AnswerStats} stats
 */
function showStats(item, stats) {
  const usage = stats.usage;
  const completion = usage?.completion_tokens;
  const rate = completion && completion > 1 && stats.decodeMs ? ((completion - 1) * 1000) / stats.decodeMs : null;
  /** @type {[string, string, string][]} */
  const rows = [
    ['ttft', 'time to first token', stats.ttftMs === null ? '–' : `${Math.round(stats.ttftMs)} ms`],
    ['tokens_per_second', 'tokens/s', rate === null ? '–' : rate.toFixed(1)],
    ['prompt_tokens', 'prompt tokens', usage ? String(usage.prompt_tokens) : '–'],
    ['cached_tokens', 'cached', usage ? String(usage.prompt_tokens_details?.cached_tokens ?? 0) : '–'],
    ['completion_tokens', 'completion tokens', completion === undefined ? '–' : String(completion)],
    ['finish_reason', 'finish', stats.finish],
  ];
  if (stats.limits) rows.push(['limits', 'limits left', stats.limits]);
  const list = document.createElement('dl');
  list.className = 'stats';
  for (const [key, name, value] of rows) {
    const term = document.createElement('dt');
    term.textContent = name;
    const detail = document.createElement('dd');
    detail.dataset.stat = key;
    detail.textContent = value;
    list.append(term, detail);
  }
  item.append(list);
}

/** @param {Headers} headers */
function limitsOf(headers) {
  const requests = headers.get('x-ratelimit-remaining-requests');
  const tokens = headers.get('x-ratelimit-remaining-tokens');
  if (requests === null || tokens === null) return null;
  return `${requests}/${headers.get('x-ratelimit-limit-requests')} requests, ${tokens}/${headers.get('x-ratelimit-limit-tokens')} tokens per minute`;
}

/** @param {boolean} busy */
function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stopButton.disabled = !busy;
}

function requestBody(/** @type {typeof history} */ messages) {
  /** @type {Record<string, unknown>} */
  const body = {
    model: ui.model.value,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    ...samplingFields({ temperature: ui.temperature.value, top_p: ui.topP.value, max_tokens: ui.maxTokens.value, seed: ui.seed.value, stop: ui.stop.value }),
  };
  const systemPrompt = ui.systemPrompt.value.trim();
  if (systemPrompt) body.system_prompt_id = systemPrompt;
  // The backend's grammar then allows only a JSON object: an answer that ends with `stop` always parses.
  if (ui.jsonMode.checked) body.response_format = { type: 'json_object' };
  return body;
}

async function send() {
  const text = ui.prompt.value;
  if (inFlight || text.trim() === '') return;
  if (!apiKey()) {
    setStatus('Enter an API key first.', 'error');
    ui.apiKey.focus();
    return;
  }
  ui.prompt.value = '';
  addMessage('user', text);
  follower.resume();
  const messages = [...history, { role: /** @type {const} */ ('user'), content: text }];
  const { item, content } = addMessage('assistant', '');
  const answerText = content.firstChild instanceof Text ? content.firstChild : content.appendChild(document.createTextNode(''));
  item.dataset.state = 'streaming';
  item.setAttribute('aria-busy', 'true');
  const controller = new AbortController();
  const chat = chatVersion;
  inFlight = controller;
  setBusy(true);
  setStatus('Waiting for the first token…');
  const started = performance.now();
  /** @type {AnswerStats} */
  const stats = { ttftMs: null, decodeMs: null, finish: '–', usage: null, limits: null };
  let firstAt = 0;
  /** @param {string} message */
  const fail = (message) => {
    item.dataset.state = 'error';
    const error = addMessage('error', message);
    item.after(error.item);
    follower.update();
    setStatus(message, 'error');
  };
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey()}`, 'content-type': 'application/json' },
      body: JSON.stringify(requestBody(messages)),
      signal: controller.signal,
    });
    if (!response.ok || !response.body) {
      item.remove();
      fail(describeError(await apiError(response)));
      if (ui.prompt.value === '') ui.prompt.value = text;
      return;
    }
    stats.limits = limitsOf(response.headers);
    for await (const event of chatEvents(response.body)) {
      const now = performance.now();
      if (event.type === 'delta') {
        if (stats.ttftMs === null) {
          stats.ttftMs = now - started;
          firstAt = now;
          setStatus('Streaming…');
        }
        stats.decodeMs = now - firstAt;
        answerText.appendData(event.text);
        follower.update();
      } else if (event.type === 'finish') stats.finish = event.reason;
      else if (event.type === 'usage') stats.usage = event.usage;
      else fail(event.message);
    }
    if (item.dataset.state !== 'error') {
      item.dataset.state = 'done';
      setStatus('Done.');
    }
  } catch (error) {
    if (!controller.signal.aborted) fail(`The connection failed: ${error instanceof Error ? error.message : String(error)}`);
    else {
      item.dataset.state = 'stopped';
      stats.finish = 'stopped';
      setStatus('Stopped.');
    }
  } finally {
    item.removeAttribute('aria-busy');
    if (item.isConnected) showStats(item, stats);
    follower.update();
    const kept = item.dataset.state === 'done' || item.dataset.state === 'stopped';
    if (kept && chat === chatVersion) history = [...messages, { role: 'assistant', content: answerText.data }];
    inFlight = null;
    setBusy(false);
  }
}

ui.apiKey.value = localStorage.getItem(KEY_STORAGE) ?? '';
/** @type {ReturnType<typeof setTimeout> | undefined} */
let keyTimer;
ui.apiKey.addEventListener('input', () => {
  const key = apiKey();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  // Look the key up once typing pauses, not on every keystroke.
  clearTimeout(keyTimer);
  keyTimer = setTimeout(() => void loadModels(), 250);
});
ui.forgetKey.addEventListener('click', () => {
  ui.apiKey.value = '';
  localStorage.removeItem(KEY_STORAGE);
  void loadModels();
});
ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    void send();
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && inFlight) inFlight.abort();
});
ui.stopButton.addEventListener('click', () => inFlight?.abort());
ui.newChat.addEventListener('click', () => {
  inFlight?.abort();
  chatVersion++;
  history = [];
  ui.messages.replaceChildren();
  setStatus('New chat.');
  ui.prompt.focus();
});
void loadModels();
