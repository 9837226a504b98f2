// Zod schemas of the public request bodies: OpenAI fields copied exactly (snake_case), vLLM-style
// extensions (top_k, min_p, repetition_penalty, ignore_eos) and system_prompt_id. Unknown fields are
// stripped; null means "not set", as the OpenAI SDKs may send it.

import { z } from 'zod';
import { responseFormatSchema, toolCallSchema, toolChoiceSchema, toolsSchema, MAX_TOOL_CALLS_PER_MESSAGE } from '../tools/tool-request-schemas';
import { MAX_LOGPROBS, publicSamplingShape, type PublicSamplingFields } from '../../../shared/sampling-fields';
import { MAX_CHOICES, MAX_MESSAGE_CHARS, MAX_MESSAGES, MAX_STOP_CHARS, MAX_STOP_STRINGS } from '../config';

const optional = <T extends z.ZodTypeAny>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

const contentPart = z
  .object({ type: z.string(), text: z.string().max(MAX_MESSAGE_CHARS).optional() })
  .passthrough()
  .superRefine((part, ctx) => {
    if (part.type !== 'text') {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['type'], message: `content parts of type "${part.type}" are not supported; only "text" is` });
    } else if (typeof part.text !== 'string') {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['text'], message: 'a text content part needs a string "text"' });
    }
  });

const messageContent = z.union([z.string().max(MAX_MESSAGE_CHARS), z.array(contentPart).max(256)]);

export const chatMessageSchema = z
  .object({
    role: z.string(),
    content: messageContent.nullish(),
    name: optional(z.string().max(256)),
    tool_calls: optional(z.array(toolCallSchema).max(MAX_TOOL_CALLS_PER_MESSAGE)),
    tool_call_id: optional(z.string().max(256)),
  })
  .superRefine((message, ctx) => {
    if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(message.role)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['role'], message: `role "${message.role}" is not supported; use system, user, assistant or tool` });
    }
    if (message.tool_calls && message.tool_calls.length > 0 && message.role !== 'assistant') {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['tool_calls'], message: 'only assistant messages carry tool_calls' });
    }
    if (message.role === 'tool' && message.tool_call_id === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['tool_call_id'], message: 'a tool message needs the tool_call_id of the call it answers' });
    }
    if (message.content == null && message.role !== 'assistant') {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['content'], message: 'content is required' });
    }
  });

const stop = optional(z.union([z.string().min(1).max(MAX_STOP_CHARS), z.array(z.string().min(1).max(MAX_STOP_CHARS)).max(MAX_STOP_STRINGS)]));

/** The sampling knobs from the shared field table (temperature, top_p, ..., ignore_eos), typed by their rows. */
const tableFields = publicSamplingShape(optional) as { [K in keyof PublicSamplingFields]-?: z.ZodType<PublicSamplingFields[K], z.ZodTypeDef, unknown> };

/** Fields shared by /v1/chat/completions and /v1/completions. */
const samplingFields = {
  model: z.string().min(1).max(256),
  max_tokens: optional(z.number().int().positive()),
  ...tableFields,
  n: optional(
    z
      .number()
      .int()
      .positive()
      .max(MAX_CHOICES, { message: `n may be at most ${MAX_CHOICES}` }),
  ),
  stop,
  stream: optional(z.boolean()),
  stream_options: optional(z.object({ include_usage: optional(z.boolean()) })),
  user: optional(z.string().max(512)),
  system_prompt_id: optional(z.string().min(1).max(128)),
  /** vLLM's: logprobs name each token "token_id:N" instead of its text. */
  return_tokens_as_token_ids: optional(z.boolean()),
};

/** OpenAI's own rule: stream_options means nothing without a stream, so it is refused rather than ignored. */
function refuseStreamOptionsWithoutStream(body: { stream?: boolean | null; stream_options?: unknown }, ctx: z.RefinementCtx): void {
  if (body.stream_options != null && body.stream !== true) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['stream_options'], message: 'stream_options is only allowed when stream is true' });
  }
}

const unsupportedIfPresent = (name: string) =>
  z.unknown().superRefine((value, ctx) => {
    if (value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${name} is not supported by this server` });
    }
  });

export const chatRequestSchema = z
  .object({
    ...samplingFields,
    messages: z
      .array(chatMessageSchema)
      .min(1, { message: 'messages must not be empty' })
      .max(MAX_MESSAGES, { message: `at most ${MAX_MESSAGES} messages` }),
    max_completion_tokens: optional(z.number().int().positive()),
    logprobs: optional(z.boolean()),
    top_logprobs: optional(z.number().int().min(0).max(MAX_LOGPROBS)),
    tools: toolsSchema,
    functions: unsupportedIfPresent('functions (use tools)'),
    function_call: unsupportedIfPresent('function_call (use tool_choice)'),
    tool_choice: toolChoiceSchema,
    parallel_tool_calls: optional(z.boolean()),
    response_format: responseFormatSchema,
    modalities: optional(z.array(z.string())).superRefine((value, ctx) => {
      if (value?.some((m) => m !== 'text')) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'only the "text" modality is supported' });
    }),
    audio: unsupportedIfPresent('audio output'),
  })
  .superRefine((body, ctx) => {
    refuseStreamOptionsWithoutStream(body, ctx);
    if (body.top_logprobs !== undefined && body.top_logprobs > 0 && !body.logprobs) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['top_logprobs'], message: 'top_logprobs requires logprobs: true' });
    }
  });
export type ChatMessageInput = z.infer<typeof chatMessageSchema>;

export const completionRequestSchema = z
  .object({
    ...samplingFields,
    prompt: z.union([
      z.string().max(MAX_MESSAGE_CHARS),
      z.array(z.string().max(MAX_MESSAGE_CHARS)).length(1, { message: 'only one prompt per request is supported' }),
      z.array(z.number().int().min(0)).min(1).max(1_000_000),
    ]),
    max_tokens: optional(z.number().int().positive()),
    logprobs: optional(z.number().int().min(0).max(MAX_LOGPROBS)),
    response_format: responseFormatSchema,
    echo: optional(z.boolean()).superRefine((value, ctx) => {
      if (value) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'echo is not supported' });
    }),
    suffix: optional(z.string()).superRefine((value, ctx) => {
      if (value) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'suffix is not supported' });
    }),
    best_of: optional(z.number().int()).superRefine((value, ctx) => {
      if (value !== undefined && value > 1) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'best_of > 1 is not supported' });
    }),
  })
  .superRefine(refuseStreamOptionsWithoutStream);

export const tokenizeRequestSchema = z.union([
  z.object({ model: optional(z.string()), prompt: z.string().max(MAX_MESSAGE_CHARS), add_special_tokens: optional(z.boolean()) }),
  z.object({
    model: optional(z.string()),
    messages: z.array(chatMessageSchema).min(1).max(MAX_MESSAGES),
    tools: toolsSchema,
    system_prompt_id: optional(z.string().min(1).max(128)),
    add_generation_prompt: optional(z.boolean()),
    add_special_tokens: optional(z.boolean()),
  }),
]);

export const detokenizeRequestSchema = z.object({ model: optional(z.string()), tokens: z.array(z.number().int().min(0)).max(1_000_000) });
