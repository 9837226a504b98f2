// A deterministic stand-in for the ONNX engine: logits are a pure function of a sequence's token ids,
// so scheduler tests know the right answer without a model. It records every step for assertions.

import type { ModelConfig } from '../model/checkpoint/config';
import { EngineCapacityError, type KvCacheStats, type ModelEngine, type StepItem } from '../model/runtime/engine-types';

export interface FakeEngineOptions {
  vocabSize?: number;
  maxSequences?: number;
  maxModelLen?: number;
  eosTokenId?: number;
  /** Awaited at the start of every step: lets a test hold the engine mid-step or advance a clock. */
  beforeStep?: (items: StepItem[]) => Promise<void>;
  /** Milliseconds each step blocks the thread, as session.run does. */
  stepMillis?: number;
  /** Draft tokens a verification item may carry (speculativeTokens); default 0. */
  speculativeTokens?: number;
}

function mix(hash: number, value: number): number {
  return Math.imul(hash ^ value, 0x01000193) >>> 0;
}

/**
 * The fake model: logits of the position after `tokenIds`. A hash of all ids picks pseudo-random
 * logits in [0, 8), so greedy and sampled outputs depend on the whole history, like a real model.
 */
export function fakeLogits(tokenIds: readonly number[], vocabSize: number): Float32Array {
  let hash = 0x811c9dc5;
  for (const tokenId of tokenIds) hash = mix(hash, tokenId);
  return fakeLogitsFromHash(hash, vocabSize);
}

function fakeLogitsFromHash(hash: number, vocabSize: number): Float32Array {
  const logits = new Float32Array(vocabSize);
  let state = hash || 1;
  for (let i = 0; i < vocabSize; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    logits[i] = ((state >>> 0) % 8000) / 1000;
  }
  return logits;
}

export class FakeEngine implements ModelEngine {
  readonly config: ModelConfig;
  readonly modelId = 'fake-mistral';
  readonly maxModelLen: number;
  /** Every step's items as received: [step][item] = { sequenceId, tokenCount }. */
  readonly stepLog: { sequenceId: number; tokenCount: number; verify?: boolean }[][] = [];
  readonly speculativeTokens: number;
  private readonly sequences = new Map<number, { tokenIds: number[]; hash: number }>();
  private readonly maxSequences: number;
  private nextId = 0;
  private lastDecodeBytes = 0;

  constructor(private readonly options: FakeEngineOptions = {}) {
    const vocabSize = options.vocabSize ?? 64;
    this.maxSequences = options.maxSequences ?? 8;
    this.maxModelLen = options.maxModelLen ?? 4096;
    this.speculativeTokens = options.speculativeTokens ?? 0;
    this.config = {
      architecture: 'MistralForCausalLM',
      vocabSize,
      hiddenSize: 64,
      intermediateSize: 128,
      layerCount: 2,
      queryHeadCount: 4,
      keyValueHeadCount: 2,
      headDim: 16,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      maxPositions: this.maxModelLen,
      slidingWindow: null,
      bosTokenId: 1,
      eosTokenId: options.eosTokenId ?? 2,
      tieWordEmbeddings: false,
    };
  }

  createSequence(): number {
    if (this.sequences.size >= this.maxSequences) throw new EngineCapacityError(`all ${this.maxSequences} sequences are in use`);
    const id = this.nextId++;
    this.sequences.set(id, { tokenIds: [], hash: 0x811c9dc5 });
    return id;
  }

  forkSequence(sourceId: number, length = this.sequenceLength(sourceId)): number {
    if (!this.canForkPrefix(sourceId, length)) throw new Error(`sequence ${sourceId} cannot be forked at ${length}`);
    const tokenIds = this.get(sourceId).tokenIds.slice(0, length);
    const id = this.createSequence();
    this.sequences.set(id, { tokenIds, hash: tokenIds.reduce(mix, 0x811c9dc5) });
    return id;
  }

  /** The fake's logits depend on the ids alone, so any prefix is exact (as without a sliding window). */
  canForkPrefix(sourceId: number, length: number): boolean {
    return Number.isInteger(length) && length >= 0 && length <= this.sequenceLength(sourceId);
  }

  releaseSequence(sequenceId: number): void {
    this.get(sequenceId);
    this.sequences.delete(sequenceId);
  }

  truncateSequence(sequenceId: number, length: number): void {
    const sequence = this.get(sequenceId);
    if (!(Number.isInteger(length) && length >= 0 && length <= sequence.tokenIds.length)) throw new Error(`cannot cut sequence ${sequenceId} to ${length}`);
    sequence.tokenIds.length = length;
    sequence.hash = sequence.tokenIds.reduce(mix, 0x811c9dc5);
  }

  sequenceLength(sequenceId: number): number {
    return this.get(sequenceId).tokenIds.length;
  }

  async step(items: StepItem[]): Promise<Float32Array[]> {
    if (this.options.beforeStep) await this.options.beforeStep(items);
    if (new Set(items.map((item) => item.sequenceId)).size !== items.length) throw new Error('items must name distinct sequences');
    if (this.options.stepMillis) {
      const until = Date.now() + this.options.stepMillis;
      while (Date.now() < until); // blocks like session.run
    }
    this.stepLog.push(items.map((item) => ({ sequenceId: item.sequenceId, tokenCount: item.tokenIds.length, ...(item.verify && { verify: true }) })));
    const { vocabSize } = this.config;
    const rows = items.map((item) => {
      const sequence = this.get(item.sequenceId);
      if (item.tokenIds.length === 0) throw new Error('empty step item');
      if (item.verify && item.tokenIds.length > 1 + this.speculativeTokens) throw new Error('verification longer than 1 + speculativeTokens');
      const verified = new Float32Array(item.verify ? item.tokenIds.length * vocabSize : 0);
      item.tokenIds.forEach((tokenId, t) => {
        if (!(tokenId >= 0 && tokenId < vocabSize)) throw new Error(`token id ${tokenId} outside the vocabulary`);
        sequence.tokenIds.push(tokenId);
        sequence.hash = mix(sequence.hash, tokenId);
        if (item.verify) verified.set(fakeLogitsFromHash(sequence.hash, vocabSize), t * vocabSize);
      });
      if (sequence.tokenIds.length > this.maxModelLen) throw new Error(`sequence ${item.sequenceId} is longer than maxModelLen`);
      return item.verify ? verified : fakeLogitsFromHash(sequence.hash, vocabSize);
    });
    this.lastDecodeBytes = items.length * this.kvBytesPerSlot();
    return rows;
  }

  kvStats(): KvCacheStats {
    let slotsUsed = 0;
    for (const sequence of this.sequences.values()) slotsUsed += sequence.tokenIds.length;
    return { slotsUsed, slotsTotal: this.maxSequences * this.maxModelLen, bytesPerSlot: this.kvBytesPerSlot(), lastStepTransferBytes: this.lastDecodeBytes };
  }

  freeSequences(): number {
    return this.maxSequences - this.sequences.size;
  }

  async dispose(): Promise<void> {
    this.sequences.clear();
  }

  /** Token ids a sequence holds (tests compare them with the prompt and the output). */
  tokenIdsOf(sequenceId: number): number[] {
    return this.get(sequenceId).tokenIds.slice();
  }

  private kvBytesPerSlot(): number {
    const { layerCount, keyValueHeadCount, headDim } = this.config;
    return 2 * layerCount * keyValueHeadCount * headDim * 4;
  }

  private get(sequenceId: number): { tokenIds: number[]; hash: number } {
    const sequence = this.sequences.get(sequenceId);
    if (!sequence) throw new Error(`unknown sequence ${sequenceId}`);
    return sequence;
  }
}
