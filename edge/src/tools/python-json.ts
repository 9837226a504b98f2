// JSON text as Python's json.dumps(value, ensure_ascii=False) writes it: mistral-common serialises tools, past
// calls and tool results that way, and the prompt ids must match its ids byte for byte.
//
// Differences from JSON.stringify: ", " and ": " separators; floats in Python's repr (1e-05, not 0.00001).
// Integral numbers print as integers (the JSON they came from almost always spelled them so; "1.0" parsed
// by JSON.parse is indistinguishable from "1"). String escapes are the same in both.

function pythonFloat(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  if (Number.isInteger(value)) return Math.abs(value) < 1e21 ? String(value === 0 ? 0 : value) : BigInt(value).toString();
  // Same shortest round-trip digits as JS; Python switches to exponent form below 1e-4 (JS below 1e-6),
  // with a signed, two-digit exponent. Non-integral doubles are below 2**53, so the upper switch (1e16) never applies.
  if (Math.abs(value) >= 1e-4) return String(value);
  const [mantissa, exponent] = value.toExponential().split('e');
  const sign = exponent.startsWith('-') ? '-' : '+';
  return `${mantissa}e${sign}${exponent.replace(/^[-+]/, '').padStart(2, '0')}`;
}

export function pythonJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') return pythonFloat(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (Array.isArray(value)) return `[${value.map(pythonJsonDumps).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${pythonJsonDumps(v)}`).join(', ')}}`;
  }
  throw new TypeError(`cannot serialise a ${typeof value} as JSON`);
}

/** mistral-common's _parse_json_content: the parsed value when `text` is JSON, else the text itself. */
export function parseJsonContent(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
