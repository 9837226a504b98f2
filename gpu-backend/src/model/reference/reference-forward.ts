// A naive float64 Mistral forward pass (Hugging Face MistralForCausalLM eager semantics), used only by tests
// as the independent reference for the ONNX engine. Readable over fast: one position at a time, full K/V history.

import type { ModelConfig } from '../checkpoint/config';
import { Checkpoint } from '../checkpoint/checkpoint';
import { mistralTensors } from '../checkpoint/mistral-tensors';

interface LayerWeights {
  inputNorm: Float32Array; // [hidden]
  queryProj: Float32Array; // [queryHeads * headDim, hidden]
  keyProj: Float32Array; // [kvHeads * headDim, hidden]
  valueProj: Float32Array; // [kvHeads * headDim, hidden]
  outputProj: Float32Array; // [hidden, queryHeads * headDim]
  postAttentionNorm: Float32Array; // [hidden]
  gateProj: Float32Array; // [intermediate, hidden]
  upProj: Float32Array; // [intermediate, hidden]
  downProj: Float32Array; // [hidden, intermediate]
}

/** Keys (already rotated) and values of every position processed so far, per layer. */
interface KeyValueHistory {
  keys: Float64Array[][]; // [layer][position] -> [kvHeads * headDim]
  values: Float64Array[][]; // [layer][position] -> [kvHeads * headDim]
}

/** weight [rows, cols] (row-major, as PyTorch Linear stores it) times x [cols] -> [rows]. */
function matVec(weight: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    const base = r * cols;
    for (let c = 0; c < cols; c++) sum += weight[base + c] * x[c];
    out[r] = sum;
  }
  return out;
}

/** RMSNorm: x * 1/sqrt(mean(x^2) + eps) * weight. */
function rmsNorm(x: Float64Array, weight: Float32Array, eps: number): Float64Array {
  let sumSquares = 0;
  for (let i = 0; i < x.length; i++) sumSquares += x[i] * x[i];
  const scale = 1 / Math.sqrt(sumSquares / x.length + eps);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * scale * weight[i];
  return out;
}

export class ReferenceModel {
  /** theta^(-2i/headDim) for i < headDim/2: the rotation speed of dimension pair (i, i + headDim/2). */
  private readonly inverseFrequencies: Float64Array; // [headDim / 2]

  private constructor(
    readonly config: ModelConfig,
    private readonly embedding: Float32Array, // [vocab, hidden]
    private readonly layers: LayerWeights[],
    private readonly finalNorm: Float32Array, // [hidden]
    private readonly outputProj: Float32Array, // [vocab, hidden]
  ) {
    const half = config.headDim / 2;
    this.inverseFrequencies = new Float64Array(half);
    for (let i = 0; i < half; i++) this.inverseFrequencies[i] = config.ropeTheta ** (-(2 * i) / config.headDim);
  }

  static async load(dir: string): Promise<ReferenceModel> {
    const checkpoint = await Checkpoint.open(dir);
    try {
      const weights = new Map<string, Float32Array>();
      for (const { name } of mistralTensors(checkpoint.config)) weights.set(name, await checkpoint.readFloat32(name));
      return ReferenceModel.fromWeights(checkpoint.config, weights);
    } finally {
      await checkpoint.close();
    }
  }

  /** Weights by Hugging Face tensor name; lm_head.weight may be absent when the embedding is tied. */
  static fromWeights(config: ModelConfig, weights: Map<string, Float32Array>): ReferenceModel {
    for (const { name, shape } of mistralTensors(config)) {
      const tensor = weights.get(name);
      const size = shape.reduce((a, b) => a * b, 1);
      if (!tensor) throw new Error(`ReferenceModel: missing weight "${name}"`);
      if (tensor.length !== size) throw new Error(`ReferenceModel: weight "${name}" has ${tensor.length} values, expected ${size} ([${shape.join(', ')}])`);
    }
    const get = (name: string) => weights.get(name) as Float32Array;
    const layers: LayerWeights[] = [];
    for (let layer = 0; layer < config.layerCount; layer++) {
      const prefix = `model.layers.${layer}`;
      layers.push({
        inputNorm: get(`${prefix}.input_layernorm.weight`),
        queryProj: get(`${prefix}.self_attn.q_proj.weight`),
        keyProj: get(`${prefix}.self_attn.k_proj.weight`),
        valueProj: get(`${prefix}.self_attn.v_proj.weight`),
        outputProj: get(`${prefix}.self_attn.o_proj.weight`),
        postAttentionNorm: get(`${prefix}.post_attention_layernorm.weight`),
        gateProj: get(`${prefix}.mlp.gate_proj.weight`),
        upProj: get(`${prefix}.mlp.up_proj.weight`),
        downProj: get(`${prefix}.mlp.down_proj.weight`),
      });
    }
    const outputProj = config.tieWordEmbeddings ? get('model.embed_tokens.weight') : get('lm_head.weight');
    return new ReferenceModel(config, get('model.embed_tokens.weight'), layers, get('model.norm.weight'), outputProj);
  }

  /** Logits of every position: [T][vocab]. Recomputed from scratch on each call. */
  forward(tokenIds: number[]): Float64Array[] {
    const history = this.emptyHistory();
    return tokenIds.map((tokenId, position) => this.logits(this.step(history, tokenId, position)));
  }

  /**
   * Greedy decoding (argmax, lowest id on ties, as torch.argmax). Returns the generated ids only; the end-of-sequence
   * id is included when generated, then decoding stops (unless ignoreEos).
   */
  greedy(promptIds: number[], maxNewTokens: number, opts: { ignoreEos?: boolean } = {}): number[] {
    if (promptIds.length === 0) throw new Error('ReferenceModel.greedy: empty prompt');
    const history = this.emptyHistory();
    let hidden: Float64Array = new Float64Array(0);
    promptIds.forEach((tokenId, position) => (hidden = this.step(history, tokenId, position)));
    const generated: number[] = [];
    while (generated.length < maxNewTokens) {
      const logits = this.logits(hidden);
      let best = 0;
      for (let id = 1; id < logits.length; id++) if (logits[id] > logits[best]) best = id;
      generated.push(best);
      if (best === this.config.eosTokenId && !opts.ignoreEos) break;
      if (generated.length < maxNewTokens) hidden = this.step(history, best, promptIds.length + generated.length - 1);
    }
    return generated;
  }

  private emptyHistory(): KeyValueHistory {
    return {
      keys: this.layers.map(() => []),
      values: this.layers.map(() => []),
    };
  }

  private logits(normalizedHidden: Float64Array): Float64Array {
    return matVec(this.outputProj, normalizedHidden, this.config.vocabSize, this.config.hiddenSize);
  }

  /** Rotates each head's (i, i + headDim/2) pairs by position * invFreq[i]: Hugging Face rotate_half, not interleaved. */
  private rotate(vector: Float64Array, headCount: number, position: number): void {
    const { headDim } = this.config;
    const half = headDim / 2;
    for (let i = 0; i < half; i++) {
      const angle = position * this.inverseFrequencies[i];
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      for (let head = 0; head < headCount; head++) {
        const base = head * headDim;
        const first = vector[base + i];
        const second = vector[base + i + half];
        vector[base + i] = first * cos - second * sin;
        vector[base + i + half] = second * cos + first * sin;
      }
    }
  }

  /** Runs one token at `position` through every layer; returns the final-normed hidden state [hidden]. */
  private step(history: KeyValueHistory, tokenId: number, position: number): Float64Array {
    const { hiddenSize, intermediateSize, queryHeadCount, keyValueHeadCount, headDim, rmsNormEps, vocabSize, slidingWindow } = this.config;
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabSize) throw new Error(`ReferenceModel: token id ${tokenId} outside [0, ${vocabSize})`);
    const queryWidth = queryHeadCount * headDim;
    const keyValueWidth = keyValueHeadCount * headDim;
    const groupSize = queryHeadCount / keyValueHeadCount;
    // Window: keys j with position - W < j <= position (W keys, itself included); none means all earlier keys.
    const firstKey = slidingWindow === null ? 0 : Math.max(0, position - slidingWindow + 1);
    const scale = 1 / Math.sqrt(headDim);

    // Embedding lookup.
    const x = Float64Array.from(this.embedding.subarray(tokenId * hiddenSize, (tokenId + 1) * hiddenSize));
    for (let layerIndex = 0; layerIndex < this.layers.length; layerIndex++) {
      const layer = this.layers[layerIndex];
      // Attention block: norm, project, rotate q and k, remember k and v.
      const normed = rmsNorm(x, layer.inputNorm, rmsNormEps);
      const query = matVec(layer.queryProj, normed, queryWidth, hiddenSize);
      const key = matVec(layer.keyProj, normed, keyValueWidth, hiddenSize);
      const value = matVec(layer.valueProj, normed, keyValueWidth, hiddenSize);
      this.rotate(query, queryHeadCount, position);
      this.rotate(key, keyValueHeadCount, position);
      const keys = history.keys[layerIndex];
      const values = history.values[layerIndex];
      keys[position] = key;
      values[position] = value;

      // Softmax(q.k / sqrt(headDim)) over the visible keys, per query head; GQA shares kv head floor(h / group).
      const attended = new Float64Array(queryWidth);
      for (let head = 0; head < queryHeadCount; head++) {
        const kvOffset = Math.floor(head / groupSize) * headDim;
        const qOffset = head * headDim;
        const scores = new Float64Array(position - firstKey + 1);
        let maxScore = Number.NEGATIVE_INFINITY;
        for (let j = firstKey; j <= position; j++) {
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += query[qOffset + d] * keys[j][kvOffset + d];
          scores[j - firstKey] = dot * scale;
          maxScore = Math.max(maxScore, dot * scale);
        }
        let total = 0;
        for (let s = 0; s < scores.length; s++) total += scores[s] = Math.exp(scores[s] - maxScore);
        for (let j = firstKey; j <= position; j++) {
          const weight = scores[j - firstKey] / total;
          for (let d = 0; d < headDim; d++) attended[qOffset + d] += weight * values[j][kvOffset + d];
        }
      }
      const attentionOut = matVec(layer.outputProj, attended, hiddenSize, queryWidth);
      for (let i = 0; i < hiddenSize; i++) x[i] += attentionOut[i];

      // SwiGLU MLP block: down(silu(gate(h)) * up(h)), added to the residual.
      const mlpIn = rmsNorm(x, layer.postAttentionNorm, rmsNormEps);
      const gate = matVec(layer.gateProj, mlpIn, intermediateSize, hiddenSize);
      const up = matVec(layer.upProj, mlpIn, intermediateSize, hiddenSize);
      for (let i = 0; i < intermediateSize; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
      const mlpOut = matVec(layer.downProj, gate, hiddenSize, intermediateSize);
      for (let i = 0; i < hiddenSize; i++) x[i] += mlpOut[i];
    }
    return rmsNorm(x, this.finalNorm, rmsNormEps);
  }
}
