// Zod schemas of OpenAI's function-calling and structured-output request fields (snake_case, copied exactly):
// tools, tool_choice, assistant tool_calls, response_format. Deeper checks (JSON Schema, names against the
// tool list, the tokenizer) happen in tool-request.ts, where the whole request is known.

import { z } from 'zod';

export const MAX_TOOLS = 128;
export const MAX_TOOL_CALLS_PER_MESSAGE = 64;
const NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const CALL_ID = /^[a-zA-Z0-9]{9}$/;
const MAX_DESCRIPTION_CHARS = 100_000;
const MAX_ARGUMENTS_CHARS = 1_000_000;

const optional = <T extends z.ZodTypeAny>(schema: T) => schema.nullish().transform((v) => v ?? undefined);
const name = z.string().regex(NAME, { message: 'names must match ^[a-zA-Z0-9_-]{1,64}$' });
const jsonObject = z.record(z.unknown());

export const toolSchema = z.object({
  type: z.literal('function'),
  function: z.object({
    name,
    description: optional(z.string().max(MAX_DESCRIPTION_CHARS)),
    parameters: optional(jsonObject),
    strict: optional(z.boolean()),
  }),
});
export type ToolInput = z.infer<typeof toolSchema>;

export const toolsSchema = optional(z.array(toolSchema).max(MAX_TOOLS, { message: `at most ${MAX_TOOLS} tools` }));

export const toolChoiceSchema = optional(
  z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string().max(256) }) })]),
);
export type ToolChoice = z.infer<typeof toolChoiceSchema>;

/** A call in an assistant message of the history; Mistral v3 ids are 9 letters or digits. */
export const toolCallSchema = z.object({
  id: z.string().regex(CALL_ID, { message: 'tool call ids must be 9 letters or digits (Mistral v3), as this server returns them' }),
  type: optional(z.literal('function')),
  function: z.object({ name, arguments: z.string().max(MAX_ARGUMENTS_CHARS) }),
});

export const responseFormatSchema = optional(
  z.discriminatedUnion(
    'type',
    [
      z.object({ type: z.literal('text') }),
      z.object({ type: z.literal('json_object') }),
      z.object({
        type: z.literal('json_schema'),
        json_schema: z.object({
          name,
          description: optional(z.string().max(MAX_DESCRIPTION_CHARS)),
          schema: optional(jsonObject),
          strict: optional(z.boolean()),
        }),
      }),
    ],
    {
      errorMap: (issue, ctx) => ({
        message: issue.code === 'invalid_union_discriminator' ? 'type must be "text", "json_object" or "json_schema"' : ctx.defaultError,
      }),
    },
  ),
);
export type ResponseFormat = z.infer<typeof responseFormatSchema>;
