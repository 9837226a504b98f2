// The edge's own metrics, per isolate: requests by route and status, errors by code, time to response
// headers, rate-limit refusals per key, requests holding a key's slot, streams by how they ended, backend
// attempts by outcome. Rendered as Prometheus text at GET /metrics (operator key); a deployment with many
// isolates reads the same events from Workers Analytics Engine (the ANALYTICS binding), one point per request.

/** Upper bounds (seconds) of the time-to-headers histogram. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Distinct keys tracked per label set; later ones are counted under key="other" (bounded cardinality). */
const MAX_KEYS = 1000;

export type StreamEnd = 'completed' | 'client_closed' | 'backend_error';
export type BackendOutcome = 'ok' | 'connect_error' | 'headers_timeout' | 'refused' | 'idle_timeout' | 'mismatched';

class Counter {
  private readonly values = new Map<string, number>();
  add(labels: string, by = 1): void {
    if (!this.values.has(labels) && this.values.size >= MAX_KEYS) labels = 'key="other"';
    this.values.set(labels, (this.values.get(labels) ?? 0) + by);
  }
  get(labels: string): number {
    return this.values.get(labels) ?? 0;
  }
  entries(): [string, number][] {
    return [...this.values];
  }
}

const quote = (value: string) => `"${value.replace(/["\\\n]/g, '_').slice(0, 128)}"`;

export class EdgeMetrics {
  readonly requests = new Counter();
  readonly errors = new Counter();
  readonly rateLimited = new Counter();
  readonly activeRequests = new Counter();
  readonly streams = new Counter();
  readonly backendAttempts = new Counter();
  private readonly latency = new Map<string, { buckets: number[]; sum: number; count: number }>();

  countRequest(route: string, status: number, seconds: number): void {
    this.requests.add(`route=${quote(route)},status="${status}"`);
    let histogram = this.latency.get(route);
    if (!histogram) {
      if (this.latency.size >= MAX_KEYS) return;
      histogram = { buckets: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.latency.set(route, histogram);
    }
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) histogram.buckets[i] += 1;
    });
    histogram.sum += seconds;
    histogram.count += 1;
  }

  countError(code: string): void {
    this.errors.add(`code=${quote(code)}`);
  }

  countRateLimited(keyId: string, reason: string): void {
    this.rateLimited.add(`key=${quote(keyId)},reason=${quote(reason)}`);
  }

  /** +1 when a request takes one of its key's slots, -1 when it gives it back. */
  holdSlot(keyId: string, delta: 1 | -1): void {
    this.activeRequests.add(`key=${quote(keyId)}`, delta);
  }

  slotsHeld(keyId: string): number {
    return this.activeRequests.get(`key=${quote(keyId)}`);
  }

  countStreamEnd(how: StreamEnd): void {
    this.streams.add(`end="${how}"`);
  }

  countBackendAttempt(outcome: BackendOutcome): void {
    this.backendAttempts.add(`outcome="${outcome}"`);
  }

  render(): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string, counter: Counter) => {
      lines.push(`# HELP edge_${name} ${help}`, `# TYPE edge_${name} ${type}`);
      for (const [labels, value] of counter.entries()) lines.push(`edge_${name}{${labels}} ${value}`);
    };
    family('requests_total', 'counter', 'Requests by route and response status.', this.requests);
    family('errors_total', 'counter', 'Error responses and in-band stream errors by code.', this.errors);
    family('rate_limited_total', 'counter', 'Requests refused with 429 by key and limit.', this.rateLimited);
    family('active_requests', 'gauge', "Admitted requests holding one of their key's concurrency slots, by key.", this.activeRequests);
    family('streams_total', 'counter', 'Streaming responses by how they ended.', this.streams);
    family('backend_attempts_total', 'counter', 'Requests sent to backends by outcome.', this.backendAttempts);
    lines.push('# HELP edge_response_headers_seconds Time from request to response headers, by route.', '# TYPE edge_response_headers_seconds histogram');
    for (const [route, histogram] of this.latency) {
      LATENCY_BUCKETS.forEach((bound, i) => lines.push(`edge_response_headers_seconds_bucket{route=${quote(route)},le="${bound}"} ${histogram.buckets[i]}`));
      lines.push(`edge_response_headers_seconds_bucket{route=${quote(route)},le="+Inf"} ${histogram.count}`);
      lines.push(`edge_response_headers_seconds_sum{route=${quote(route)}} ${histogram.sum}`);
      lines.push(`edge_response_headers_seconds_count{route=${quote(route)}} ${histogram.count}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

/** This isolate's metrics. */
export const edgeMetrics = new EdgeMetrics();
