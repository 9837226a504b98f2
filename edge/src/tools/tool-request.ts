// Function-calling and structured-output fields of a request -> what the prompt gets (the tool list), what
// the backend enforces (a GrammarSpec) and whether [TOOL_CALLS] output is parsed into tool_calls.
//
// tool_choice: "auto" (the default with tools): the model may answer or call; once it writes [TOOL_CALLS]
// the grammar holds it to the tools' schemas. "required": it must call one or more tools. A named function:
// it must call that one. "none": no tools in the prompt (vLLM's --exclude-tools-when-tool-choice-none), no
// grammar, and a [TOOL_CALLS] written anyway stays text. response_format json_object / json_schema apply to
// chat and completions alike; with tools they are refused unless tool_choice is "none" (the contract carries
// one grammar per request, and "call a tool or answer in this format" is not one of them).

import type { GrammarSpec } from '../../../shared/protocol';
import { badRequest } from '../../../shared/http-error';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { checkJsonSchema, toGrammarSchema } from './json-schema-check';
import type { ResponseFormat, ToolChoice, ToolInput } from './tool-request-schemas';
import { toolControlIds, type ToolDefinition } from './tool-prompt';

export interface ToolFields {
  tools?: ToolInput[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  response_format?: ResponseFormat;
}

export interface ToolPlan {
  /** Tools for the prompt's [AVAILABLE_TOOLS] (undefined: none). */
  tools: ToolDefinition[] | undefined;
  grammar: GrammarSpec | undefined;
  /** The [TOOL_CALLS] control id when the output's calls become tool_calls; undefined otherwise. */
  toolCallTokenId: number | undefined;
}

const NO_TOOL_TOKENS =
  "this model's tokenizer has no tool-call tokens ([TOOL_CALLS], [AVAILABLE_TOOLS]); function calling needs a v3 (Mistral 7B v0.3) tokenizer";
const EMPTY_PARAMETERS = { type: 'object', properties: {} };

/** response_format -> the backend's grammar (undefined for text); the schema is checked first. */
export function responseFormatGrammar(format: ResponseFormat): GrammarSpec | undefined {
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json_object' };
  const schema = format.json_schema.schema;
  if (!schema) return { type: 'json_object' };
  checkJsonSchema(schema, 'response_format.json_schema.schema');
  return { type: 'json_schema', schema: toGrammarSchema(schema) as Record<string, unknown> };
}

function toolDefinitions(tools: ToolInput[]): ToolDefinition[] {
  const seen = new Set<string>();
  return tools.map((tool, i) => {
    const { name, description, parameters } = tool.function;
    if (seen.has(name))
      throw badRequest(`Invalid value for 'tools[${i}].function.name': the name '${name}' is used by another tool`, `tools[${i}].function.name`);
    seen.add(name);
    const param = `tools[${i}].function.parameters`;
    if (parameters) {
      if (parameters.type !== undefined && parameters.type !== 'object')
        throw badRequest(`Invalid value for '${param}': parameters must describe a JSON object (type "object")`, param);
      checkJsonSchema(parameters, param);
    }
    return { name, description: description ?? '', parameters: parameters ?? EMPTY_PARAMETERS };
  });
}

export function planTools(body: ToolFields, tokenizer: Tokenizer): ToolPlan {
  const tools = body.tools && body.tools.length > 0 ? body.tools : undefined;
  const choice = body.tool_choice ?? (tools ? 'auto' : 'none');
  if (!tools) {
    if (choice !== 'none' && choice !== 'auto')
      throw badRequest("Invalid value for 'tool_choice': a tool must be required or named only when 'tools' lists tools", 'tool_choice');
    return { tools: undefined, grammar: responseFormatGrammar(body.response_format), toolCallTokenId: undefined };
  }
  const controls = toolControlIds(tokenizer);
  if (!controls) throw badRequest(`Invalid value for 'tools': ${NO_TOOL_TOKENS}`, 'tools');
  const definitions = toolDefinitions(tools);
  if (choice === 'none') return { tools: undefined, grammar: responseFormatGrammar(body.response_format), toolCallTokenId: undefined };
  if (body.response_format && body.response_format.type !== 'text') {
    throw badRequest(
      'Invalid value for \'response_format\': json_object and json_schema cannot be combined with tools unless tool_choice is "none"',
      'response_format',
    );
  }
  let offered = definitions;
  if (typeof choice === 'object') {
    offered = definitions.filter((tool) => tool.name === choice.function.name);
    if (offered.length === 0)
      throw badRequest(`Invalid value for 'tool_choice': the function '${choice.function.name.slice(0, 64)}' is not in 'tools'`, 'tool_choice');
  }
  const grammar: GrammarSpec = {
    type: 'tool_calls',
    mode: choice === 'auto' ? 'auto' : 'required',
    tools: offered.map((tool) => ({ name: tool.name, parameters: toGrammarSchema(tool.parameters) as Record<string, unknown> })),
    parallel: body.parallel_tool_calls ?? true,
  };
  return { tools: definitions, grammar, toolCallTokenId: controls.toolCalls };
}
