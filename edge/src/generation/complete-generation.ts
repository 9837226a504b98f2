// Non-streaming generation: the same backend event pipeline as streaming, aggregated per choice. The
// rate-limit lease and the backend's load slot are released whatever happens; a client that left (deployed:
// request.signal) is billed the backend's count of what it generated, as a stream's is (settleClientGone).

import type { Usage } from '../../../shared/protocol';
import { backendPool, type BackendLease } from '../backend/backend-pool';
import { HttpError } from '../../../shared/http-error';
import { addToolCallDelta, peerOf, planEvents, settleClientGone, settledUsage, type ChoiceResult, type GenerationPlan } from './generation-plan';

const LOST = 'The connection to the model backend was lost.';

export async function completeGeneration(plan: GenerationPlan): Promise<{ choices: ChoiceResult[]; usage: Usage }> {
  const upstream = new AbortController();
  let lease: BackendLease | null = null;
  let usage: Usage | null = null;
  // Stopped first (the lease then holds the abort back until the backend has answered with its count).
  const onClientAbort = () => {
    if (lease && !usage) plan.waitUntil(lease.stop('client_closed'));
    upstream.abort();
  };
  plan.clientSignal?.addEventListener('abort', onClientAbort);
  const received = { tokenCount: 0 };
  let failed = false;
  try {
    lease = await backendPool(plan.config).open(peerOf(plan), plan.request, upstream.signal);
    const choices: ChoiceResult[] = Array.from({ length: plan.choiceCount }, () => ({ text: '', finishReason: null, logprobs: [], toolCalls: [] }));
    for await (const event of planEvents(plan, lease, received)) {
      if (event.type === 'delta') {
        choices[event.choice].text += event.text;
        choices[event.choice].logprobs.push(...event.logprobs);
      } else if (event.type === 'tool_call') addToolCallDelta(choices[event.choice].toolCalls, event.delta);
      else if (event.type === 'finish') choices[event.choice].finishReason = event.finishReason;
      else if (event.type === 'usage') usage = event.usage;
      else {
        failed = true;
        throw new HttpError(503, 'backend_unavailable', event.message, null, { 'retry-after': '1' });
      }
    }
    if (!usage) throw new HttpError(503, 'backend_unavailable', LOST, null, { 'retry-after': '1' });
    return { choices, usage };
  } catch (error) {
    if (error instanceof HttpError) throw new HttpError(error.status, error.code, error.message, error.param, { ...error.headers, ...plan.admission.headers });
    failed = true;
    throw new HttpError(503, 'backend_unavailable', LOST, null, { ...plan.admission.headers, 'retry-after': '1' });
  } finally {
    plan.clientSignal?.removeEventListener('abort', onClientAbort);
    // No lease: no backend took the request (as a stream's early 503), so nothing is charged or billed.
    if (lease && !usage && plan.clientSignal?.aborted) settleClientGone(plan, lease, received);
    else plan.waitUntil(plan.admission.release(lease ? settledUsage(plan, usage, received) : null));
    upstream.abort();
    // A body cut short because the client left (the edge aborted it) says nothing of the backend's health.
    lease?.done(failed && !plan.clientSignal?.aborted);
  }
}
