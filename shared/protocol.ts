// The edge <-> backend protocol: token ids in, token ids out (vLLM's "tokens in, tokens out").
// Both sides import this file; it holds no runtime APIs so it runs in workerd and Node alike.

export const PROTOCOL_VERSION = 1;

/** Header that carries the shared secret from the edge to the backend (`Bearer <BACKEND_TOKEN>`). */
export const BACKEND_AUTH_HEADER = 'authorization';
/** Header the backend sets on every response so the edge can refuse a mismatched peer. */
export const PROTOCOL_VERSION_HEADER = 'x-protocol-version';

/**
 * The backend sends `: ping` on a quiet stream (a long prefill) this often; the edge's default
 * BACKEND_IDLE_TIMEOUT_MS is three of them, so one late ping never fails a request. (The edge's own
 * HEARTBEAT_MS, 5 s, is another link: edge -> public client, whose proxies are unknown.)
 */
export const BACKEND_HEARTBEAT_MS = 15_000;

/** Sampling parameters. Every field is optional on the wire; the backend applies DEFAULT_SAMPLING. */
export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  topP: number;
  /** 0 or -1 disables top-k. */
  topK: number;
  minP: number;
  /** Same seed, same output, whatever else shares the batch. */
  seed?: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  /** Upper bound on generated tokens per choice. */
  maxTokens: number;
  /** Generation of a choice stops after any of these ids (the id is not counted as text). */
  stopTokenIds: number[];
  /** Keep generating past the model's EOS id. */
  ignoreEos: boolean;
  /** Number of top alternatives to report with each token; undefined = no logprobs, 0 = chosen token only. */
  logprobs?: number;
  /** Independent choices that share the prompt's KV state. */
  n: number;
}

// Ranges, limits, defaults and public names of these fields: one table in sampling-fields.ts.
export { DEFAULT_SAMPLING } from './sampling-fields';

/** POST /v1/generate body. */
export interface GenerateRequest {
  requestId: string;
  /** The whole prompt, BOS included, as the model sees it. */
  tokenIds: number[];
  sampling?: Partial<SamplingParams>;
  /** true: text/event-stream of GenerateEvent; false: one GenerateResponse JSON body. */
  stream: boolean;
  /**
   * Optional: length of a head of `tokenIds` that other requests share (e.g. BOS + system prompt).
   * The backend keeps its KV state in the prefix cache; later requests starting with it skip its prefill.
   */
  prefixLength?: number;
  /** Optional constraint on the generated ids, enforced by the backend before sampling (see GrammarSpec). */
  grammar?: GrammarSpec;
}

/**
 * POST /v1/stop body: the edge ends request `requestId` itself. `reason` "stop_string" (the default): a stop string
 * matched in its text, and the backend counts a stop, so the edge's cancel of the stream that follows is not taken
 * for a client that left; "client_closed": its client left, counted as an abort (as a closed connection is). The
 * answer (200, a StopResponse) comes once the request has ended, at the backend's next step boundary, and also
 * names a request that ended on its own shortly before; 404 when the backend knows no usage for that id.
 */
export interface StopRequest {
  requestId: string;
  reason?: StopReason;
}

export type StopReason = 'stop_string' | 'client_closed';

/**
 * 200 answer to POST /v1/stop: the request's usage as its `end` event carries it, so what the backend generated,
 * tokens the edge had not read yet included (what a client that left is billed).
 */
export interface StopResponse {
  usage: Usage;
}

/**
 * A per-request constraint on the output (XGrammar on the backend). The mask applies before sampling; EOS is
 * allowed exactly when the grammar can end. A spec the backend cannot compile or enforce is answered with a
 * 400 `invalid_request` whose `param` is "grammar" and whose message names the problem (the schema is the
 * caller's own, so the edge may show it); one too large or too slow to compile (over ~2 s) with a 413 likewise.
 */
export type GrammarSpec =
  /** Any JSON object. */
  | { type: 'json_object' }
  /** JSON text matching this JSON Schema. */
  | { type: 'json_schema'; schema: Record<string, unknown> }
  /**
   * Mistral v3 function calling: the control token [TOOL_CALLS], then a JSON array of
   * {"name": <a tool's name>, "arguments": <an object matching that tool's parameters>} (one element unless
   * `parallel`), then EOS. 'required': the output starts with [TOOL_CALLS]; 'auto': unconstrained until the
   * model emits [TOOL_CALLS], constrained from then on.
   */
  | { type: 'tool_calls'; mode: 'required' | 'auto'; tools: { name: string; parameters: Record<string, unknown> }[]; parallel: boolean };

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose KV state came from the prefix cache (skipped prefill). */
  cachedTokens: number;
}

export interface TokenLogprob {
  tokenId: number;
  logprob: number;
}

export interface SampledLogprob extends TokenLogprob {
  /** The `logprobs` most likely alternatives at this step, most likely first. */
  top: TokenLogprob[];
}

/** SSE event names and their JSON payloads (one `event:` + one `data:` line per event). */
export interface GenerateEventMap {
  /** New token ids for one choice, in order. logprobs[i] belongs to tokenIds[i]. */
  token: { choice: number; tokenIds: number[]; logprobs?: SampledLogprob[] };
  /** One choice ended. */
  finish: { choice: number; finishReason: FinishReason };
  /** The request ended; always the last event of a successful stream. */
  end: { usage: Usage };
  /** In-band error after the first byte; the stream ends after it. */
  error: ErrorBody['error'];
}

export type GenerateEventName = keyof GenerateEventMap;
export type GenerateEvent = {
  [K in GenerateEventName]: { event: K; data: GenerateEventMap[K] };
}[GenerateEventName];

/** Non-streaming answer to POST /v1/generate. */
export interface GenerateResponse {
  requestId: string;
  choices: { choice: number; tokenIds: number[]; finishReason: FinishReason; logprobs?: SampledLogprob[] }[];
  usage: Usage;
}

/** GET /v1/model: what the backend serves, read by the edge for limits and by operators. */
export interface ModelInfo {
  modelId: string;
  vocabSize: number;
  /** Longest prompt + completion the backend accepts. */
  maxModelLen: number;
  slidingWindow: number | null;
  bosTokenId: number;
  eosTokenId: number;
}

/** Error codes shared by both sides; OpenAI-shaped at the edge. */
export type ErrorCode =
  | 'invalid_request'
  | 'invalid_api_key'
  | 'permission_denied'
  | 'rate_limit_exceeded'
  | 'context_length_exceeded'
  | 'backend_unavailable'
  | 'overloaded'
  | 'shutting_down'
  | 'internal_error'
  | 'not_found'
  | 'model_not_found';

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: ErrorCode };
}

/** OpenAI's error `type` per code; every other code is an `invalid_request_error`. */
const ERROR_TYPES: Partial<Record<ErrorCode, string>> = {
  invalid_api_key: 'authentication_error',
  permission_denied: 'permission_error',
  rate_limit_exceeded: 'rate_limit_error',
  backend_unavailable: 'server_error',
  overloaded: 'server_error',
  shutting_down: 'server_error',
  internal_error: 'server_error',
};

export function errorBody(code: ErrorCode, message: string, param: string | null = null): ErrorBody {
  return { error: { message, type: ERROR_TYPES[code] ?? 'invalid_request_error', param, code } };
}
