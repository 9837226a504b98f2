// One error type for every refusal before the first byte; rendered OpenAI-shaped via shared/protocol.ts.

import { errorBody, type ErrorCode } from '../../shared/protocol';

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
