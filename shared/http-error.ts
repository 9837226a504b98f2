// The one error type of both sides: any refusal before the first byte is thrown as an HttpError and
// rendered OpenAI-shaped by the app's single `onError` (edge/src/index.ts, gpu-backend/src/server/app.ts).
// Pure TypeScript plus the standard Response; after the first byte, errors travel in-band instead.

import { errorBody, type ErrorCode } from './protocol';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorResponse(error: HttpError): Response {
  return new Response(JSON.stringify(errorBody(error.code, error.message, error.param)), {
    status: error.status,
    headers: { 'content-type': 'application/json', ...error.headers },
  });
}

export function badRequest(message: string, param: string | null = null): HttpError {
  return new HttpError(400, 'invalid_request', message, param);
}

/** `["messages", 1, "content"]` -> `messages[1].content`: a zod issue path as the wire names the field; '' for the body itself. */
export function fieldPath(path: readonly (string | number)[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}
