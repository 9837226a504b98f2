// Keeps shared/protocol.ts's promise: the edge refuses a backend that speaks another protocol version, or that
// serves a model other than the one its tokenizer and limits describe (vocabulary size, BOS/EOS ids, context).
// Checked on GET /v1/model before a backend's first request, again each PEER_CHECK_TTL_MS, per backend pool.

import { BACKEND_AUTH_HEADER, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER, type ModelInfo } from '../../../shared/protocol';

/** What the edge serves: a backend must match it. */
export interface PeerExpectation {
  vocabSize: number;
  bosTokenId: number;
  eosTokenId: number;
  /** The edge's MAX_MODEL_LEN; the backend must accept at least this much. */
  maxModelLen: number;
}

export const PEER_CHECK_TTL_MS = 60_000;

function mismatch(info: Partial<ModelInfo>, expected: PeerExpectation): string | null {
  const differs = (name: keyof PeerExpectation & keyof ModelInfo) => info[name] !== expected[name];
  if (differs('vocabSize') || differs('bosTokenId') || differs('eosTokenId')) {
    return `serves vocabulary ${String(info.vocabSize)} (BOS ${String(info.bosTokenId)}, EOS ${String(info.eosTokenId)}), but the edge's tokenizer has ${expected.vocabSize} (BOS ${expected.bosTokenId}, EOS ${expected.eosTokenId}): rebuild the edge's tokenizer for that model (npm run build:tokenizer) or point BACKEND_URLS elsewhere`;
  }
  if (typeof info.maxModelLen !== 'number' || info.maxModelLen < expected.maxModelLen) {
    return `accepts ${String(info.maxModelLen)} tokens of context, less than the edge's MAX_MODEL_LEN ${expected.maxModelLen}`;
  }
  return null;
}

/** The verdicts of one backend pool: each backend is asked again once its verdict is PEER_CHECK_TTL_MS old. */
export class PeerChecks {
  private readonly verdicts = new Map<string, { at: number; problem: string | null }>();

  constructor(private readonly token: string) {}

  /**
   * null when the backend at `url` may serve this edge; a sentence naming the mismatch when it may not.
   * Throws when the backend cannot be asked (connect error, timeout): the caller treats that as a failed attempt.
   */
  async problem(url: string, expected: PeerExpectation, signal: AbortSignal): Promise<string | null> {
    const known = this.verdicts.get(url);
    if (known && Date.now() - known.at < PEER_CHECK_TTL_MS) return known.problem;
    const response = await fetch(`${url}/v1/model`, { headers: this.token ? { [BACKEND_AUTH_HEADER]: `Bearer ${this.token}` } : {}, signal });
    if (response.status >= 500 || response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw new Error(`GET /v1/model answered ${response.status}`);
    }
    const version = response.headers.get(PROTOCOL_VERSION_HEADER);
    let problem: string | null;
    if (version !== String(PROTOCOL_VERSION)) {
      await response.body?.cancel();
      problem = `speaks protocol version ${version ?? '(none)'}, but this edge speaks ${PROTOCOL_VERSION}`;
    } else {
      problem = mismatch(((await response.json().catch(() => ({}))) ?? {}) as Partial<ModelInfo>, expected);
    }
    if (problem && known?.problem !== problem) console.error(`edge: refusing backend ${url}: it ${problem}`);
    this.verdicts.set(url, { at: Date.now(), problem });
    return problem;
  }
}
