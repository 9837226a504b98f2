// Prometheus text exposition (format 0.0.4) of the backend's counters, gauges and histograms.
// Request outcomes and latencies are measured on the HTTP thread; batch and cache figures come from
// the scheduler's stats after each step.

import type { SchedulerStats } from './scheduler';

const PREFIX = 'backend_';
/** Seconds; covers 1 ms decode steps on a GPU to multi-second cold prefills on a CPU. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds; up to the 2 s compile limit (measured compile times: docs/bench/serving.md). */
const COMPILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];

export type RequestOutcome =
  | 'stop'
  | 'length'
  | 'abort'
  | 'error'
  | 'invalid_request'
  | 'context_length_exceeded'
  | 'overloaded'
  | 'shutting_down'
  | 'unauthorized'
  | 'not_ready';

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) this.counts[i]++;
  }
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

export class Metrics {
  private readonly requests = new Map<RequestOutcome, number>();
  private promptTokens = 0;
  private completionTokens = 0;
  private cachedTokens = 0;
  private readonly timeToFirstToken = new Histogram(LATENCY_BUCKETS);
  private readonly interTokenLatency = new Histogram(LATENCY_BUCKETS);
  private scheduler: SchedulerStats | null = null;
  private readonly grammarCompile = new Histogram(COMPILE_BUCKETS);
  private grammarCacheHits = 0;
  private engineLabels = '';

  /** The info gauge's labels: which session runtime and execution provider serve. */
  setEngine(engine: { runtime: string; executionProvider: string }): void {
    this.engineLabels = `{runtime="${engine.runtime}",execution_provider="${engine.executionProvider}"}`;
  }

  countRequest(outcome: RequestOutcome): void {
    this.requests.set(outcome, (this.requests.get(outcome) ?? 0) + 1);
  }

  countUsage(usage: { promptTokens: number; completionTokens: number; cachedTokens: number }): void {
    this.promptTokens += usage.promptTokens;
    this.completionTokens += usage.completionTokens;
    this.cachedTokens += usage.cachedTokens;
  }

  observeTimeToFirstToken(seconds: number): void {
    this.timeToFirstToken.observe(seconds);
  }

  observeInterTokenLatency(seconds: number): void {
    this.interTokenLatency.observe(seconds);
  }

  /** A grammar check: compiled in the check thread (its seconds) or answered from the remembered outcomes. */
  observeGrammarCheck(seconds: number, cached: boolean): void {
    if (cached) this.grammarCacheHits++;
    else this.grammarCompile.observe(seconds);
  }

  updateScheduler(stats: SchedulerStats): void {
    this.scheduler = stats;
  }

  render(): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string) => {
      lines.push(`# HELP ${PREFIX}${name} ${help}`, `# TYPE ${PREFIX}${name} ${type}`);
    };
    const sample = (name: string, value: number, labels = '') => lines.push(`${PREFIX}${name}${labels} ${formatNumber(value)}`);

    if (this.engineLabels) {
      family('engine_info', 'gauge', 'The session runtime and execution provider serving (always 1).');
      sample('engine_info', 1, this.engineLabels);
    }
    family('requests_total', 'counter', 'Generate requests by outcome (finish reason, or why they were refused).');
    for (const [outcome, count] of this.requests) sample('requests_total', count, `{outcome="${outcome}"}`);
    family('prompt_tokens_total', 'counter', 'Prompt tokens of finished requests.');
    sample('prompt_tokens_total', this.promptTokens);
    family('completion_tokens_total', 'counter', 'Generated tokens of finished requests, all choices.');
    sample('completion_tokens_total', this.completionTokens);
    family('cached_prompt_tokens_total', 'counter', 'Prompt tokens served from the prefix cache.');
    sample('cached_prompt_tokens_total', this.cachedTokens);
    this.renderHistogram(lines, 'time_to_first_token_seconds', 'Request arrival to its first token event.', this.timeToFirstToken);
    this.renderHistogram(lines, 'inter_token_latency_seconds', 'Time between consecutive token events of one choice.', this.interTokenLatency);

    this.renderHistogram(lines, 'grammar_compile_seconds', 'Grammar compiles before admission (cache misses of the check).', this.grammarCompile);
    family('grammar_cache_hits_total', 'counter', 'Grammar checks answered from outcomes already known.');
    sample('grammar_cache_hits_total', this.grammarCacheHits);

    const stats = this.scheduler;
    const gauges: [string, string, number][] = [
      ['running_sequences', 'Choices prefilling or decoding.', stats?.running ?? 0],
      ['waiting_requests', 'Requests queued for admission.', stats?.waiting ?? 0],
      ['batch_size', 'Sequences in the last engine step.', stats?.lastBatchSize ?? 0],
      ['batch_decode_sequences', 'Single-token decodes in the last engine step.', stats?.lastDecodeCount ?? 0],
      ['batch_prefill_tokens', 'Prompt tokens prefilled in the last engine step.', stats?.lastPrefillTokens ?? 0],
      ['kv_slots_used', 'KV cache token slots holding keys and values.', stats?.kv.slotsUsed ?? 0],
      ['kv_slots_free', 'KV cache token slots available.', stats ? stats.kv.slotsTotal - stats.kv.slotsUsed : 0],
      ['kv_step_transfer_bytes', 'Bytes moved into and out of the last decode step.', stats?.kv.lastStepTransferBytes ?? 0],
      ['free_sequences', 'Engine sequences that can still be created.', stats?.freeSequences ?? 0],
      ['prefix_cache_entries', 'Prefix snapshots held.', stats?.prefixCacheEntries ?? 0],
    ];
    for (const [name, help, value] of gauges) {
      family(name, 'gauge', help);
      sample(name, value);
    }
    family('engine_steps_total', 'counter', 'Engine steps run.');
    sample('engine_steps_total', stats?.steps ?? 0);
    family('prefix_cache_hits_total', 'counter', 'Admitted requests whose prompt head came from the prefix cache.');
    sample('prefix_cache_hits_total', stats?.prefixCacheHits ?? 0);
    family('prefix_cache_misses_total', 'counter', 'Admitted requests prefilled from the first token.');
    sample('prefix_cache_misses_total', stats?.prefixCacheMisses ?? 0);
    family('speculative_drafted_tokens_total', 'counter', 'Draft tokens verified (speculative decoding by prompt lookup).');
    sample('speculative_drafted_tokens_total', stats?.speculativeDrafted ?? 0);
    family('speculative_accepted_tokens_total', 'counter', 'Draft tokens the sampler kept.');
    sample('speculative_accepted_tokens_total', stats?.speculativeAccepted ?? 0);
    return `${lines.join('\n')}\n`;
  }

  private renderHistogram(lines: string[], name: string, help: string, histogram: Histogram): void {
    lines.push(`# HELP ${PREFIX}${name} ${help}`, `# TYPE ${PREFIX}${name} histogram`);
    histogram.buckets.forEach((bound, i) => lines.push(`${PREFIX}${name}_bucket{le="${bound}"} ${histogram.counts[i]}`));
    lines.push(`${PREFIX}${name}_bucket{le="+Inf"} ${histogram.count}`);
    lines.push(`${PREFIX}${name}_sum ${histogram.sum}`, `${PREFIX}${name}_count ${histogram.count}`);
  }
}
