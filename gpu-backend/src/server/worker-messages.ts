// Messages between the HTTP thread (GenerationClient) and the engine thread (engine-worker.ts).
// Plain data only: they cross a worker_threads port by structured clone.

import type { GenerateEvent, ModelInfo } from '../../../shared/protocol';
import type { EngineOptions } from '../model/runtime/engine-types';
import type { FakeEngineOptions } from './fake-engine';
import type { SchedulerLimits, SchedulerStats } from './scheduler';
import type { ScheduledRequest } from './sequence';

export interface ServingLimits extends SchedulerLimits {
  /** Choices that may wait for admission beyond the running ones; past it requests get 503. */
  maxQueue: number;
}

/** What the engine thread loads and how it schedules. Unset limits are derived from the engine. */
export interface EngineHostOptions {
  engine: { kind: 'onnx'; options: EngineOptions } | { kind: 'fake'; options: Omit<FakeEngineOptions, 'beforeStep'> };
  limits?: Partial<ServingLimits>;
  /** The id /v1/model reports; defaults to the engine's own (the model folder's name). */
  modelId?: string;
  /** Folder whose tokenizer gives the grammar vocabulary; defaults to the ONNX engine's model folder. */
  vocabularyDir?: string;
  /** Post a debug line per step: decodes, prefill tokens, wall time and the bytes it moved (engine.kvStats()). */
  logStepTransfers?: boolean;
}

export type ToEngineThread = { type: 'submit'; request: ScheduledRequest } | { type: 'cancel'; id: number } | { type: 'stop' };

export type FromEngineThread =
  /** `stats`: the idle figures (free KV slots and sequences), so /metrics is right before the first step. */
  | { type: 'ready'; modelInfo: ModelInfo; limits: ServingLimits; stats?: SchedulerStats }
  /** Everything one step produced, in order, and the scheduler's state after it. */
  | { type: 'step'; events: [number, GenerateEvent][]; stats: SchedulerStats }
  | { type: 'failed'; message: string }
  | { type: 'log'; level: 'info' | 'debug'; message: string }
  | { type: 'stopped' };
