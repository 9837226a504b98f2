// Mistral v3 function calling in the prompt, as mistral-common's InstructTokenizerV3 writes it: the tool list
// as [AVAILABLE_TOOLS] <json> [/AVAILABLE_TOOLS] before the last user turn, past calls as
// [TOOL_CALLS] <json array> + EOS, results as [TOOL_RESULTS] {"content": ..., "call_id": ...} [/TOOL_RESULTS].
// The JSON is Python's json.dumps (see python-json.ts); v1 vocabularies have none of these control pieces.

import type { Tokenizer } from '../tokenizer/tokenizer';
import { parseJsonContent, pythonJsonDumps } from './python-json';

export interface ToolDefinition {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

/** A call in an assistant message of the history (OpenAI's tool_calls[i], flattened). */
export interface ToolCallRecord {
  id: string;
  name: string;
  /** JSON text of the arguments, as the client sent it. */
  arguments: string;
}

export interface ToolControlIds {
  toolCalls: number;
  availableTools: number;
  endAvailableTools: number;
  toolResults: number;
  endToolResults: number;
}

const PIECES: Record<keyof ToolControlIds, string> = {
  toolCalls: '[TOOL_CALLS]',
  availableTools: '[AVAILABLE_TOOLS]',
  endAvailableTools: '[/AVAILABLE_TOOLS]',
  toolResults: '[TOOL_RESULTS]',
  endToolResults: '[/TOOL_RESULTS]',
};

const known = new WeakMap<Tokenizer, ToolControlIds | null>();

/** The vocabulary's tool control ids, or null when it has none (v1). Looked up once per tokenizer. */
export function toolControlIds(tokenizer: Tokenizer): ToolControlIds | null {
  let ids = known.get(tokenizer);
  if (ids !== undefined) return ids;
  const byPiece = new Map<string, number>();
  const wanted = new Set(Object.values(PIECES));
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const piece = tokenizer.idToPiece(id)!;
    // Control pieces decode to nothing; a normal piece spelled "[TOOL_CALLS]" would be user text.
    if (wanted.has(piece) && tokenizer.surfaces[id] === '' && tokenizer.byteValues[id] < 0) byPiece.set(piece, id);
  }
  const entries = Object.entries(PIECES).map(([key, piece]) => [key, byPiece.get(piece)] as const);
  ids = entries.every(([, id]) => id !== undefined) ? (Object.fromEntries(entries) as unknown as ToolControlIds) : null;
  known.set(tokenizer, ids);
  return ids;
}

/** The [AVAILABLE_TOOLS] body: mistral-common's Tool.model_dump() of each tool. */
export function availableToolsJson(tools: ToolDefinition[]): string {
  return pythonJsonDumps(
    tools.map((tool) => ({ type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.parameters } })),
  );
}

/** The [TOOL_CALLS] body of a past assistant message: arguments parsed where they are JSON. */
export function toolCallsJson(calls: ToolCallRecord[]): string {
  return pythonJsonDumps(calls.map((call) => ({ name: call.name, arguments: parseJsonContent(call.arguments), id: call.id })));
}

/** The [TOOL_RESULTS] body: the content parsed where it is JSON ("22" becomes 22). */
export function toolResultJson(content: string, callId: string): string {
  return pythonJsonDumps({ content: parseJsonContent(content), call_id: callId });
}
