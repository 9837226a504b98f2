// Body reading and validation at the boundary: size cap (413), JSON (400), zod -> 400 naming the field.

import type { z } from 'zod';
import { HttpError, badRequest, fieldPath } from '../../../shared/http-error';

export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw new HttpError(413, 'invalid_request', `Request body is larger than ${maxBytes} bytes.`);
  if (!request.body) throw badRequest('Request body is empty; send a JSON object.');
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new HttpError(413, 'invalid_request', `Request body is larger than ${maxBytes} bytes.`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw badRequest('Request body is not valid UTF-8.');
  }
  if (text.trim() === '') throw badRequest('Request body is empty; send a JSON object.');
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest('Request body is not valid JSON.');
  }
}

export function validate<T extends z.ZodTypeAny>(schema: T, body: unknown): z.infer<T> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('Request body must be a JSON object.');
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  // Report the deepest, most specific issue first; union failures carry their branches' issues.
  const issue = parsed.error.issues[0];
  const nested = issue.code === 'invalid_union' ? issue.unionErrors.flatMap((e) => e.issues).sort((a, b) => b.path.length - a.path.length)[0] : undefined;
  const chosen = nested ?? issue;
  const param = fieldPath(chosen.path) || null;
  const message = chosen.code === 'invalid_type' && chosen.received === 'undefined' ? `${param ?? 'field'} is required` : chosen.message;
  throw badRequest(param ? `Invalid value for '${param}': ${message}` : message, param);
}
