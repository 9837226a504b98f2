// pythonJsonDumps against text printed by CPython's json.dumps(..., ensure_ascii=False) (pasted below).

import { describe, expect, it } from 'vitest';
import { parseJsonContent, pythonJsonDumps } from './python-json';

describe('pythonJsonDumps', () => {
  it('writes what json.dumps(ensure_ascii=False) writes', () => {
    const value = [1e-5, 0.0001, 1.5e-7, 2.5, 0.1, 123.456, -0.00012, 1e-300, 5, -3, { é: 'ü\n"\\', a: [true, false, null] }, '\u0001\u007f\u2028'];
    // python3 -c "import json; print(json.dumps([1e-05, 0.0001, 1.5e-07, 2.5, 0.1, 123.456, -0.00012, 1e-300, 5, -3,
    //   {'é': 'ü\n\"\\\\', 'a': [True, False, None]}, '\x01\x7f\u2028'], ensure_ascii=False))"
    const python =
      '[1e-05, 0.0001, 1.5e-07, 2.5, 0.1, 123.456, -0.00012, 1e-300, 5, -3, {"é": "ü\\n\\"\\\\", "a": [true, false, null]}, "\\u0001\u007f\u2028"]';
    expect(pythonJsonDumps(value)).toBe(python);
  });

  it('keeps text that is not JSON as text, like mistral-common', () => {
    expect(parseJsonContent('22')).toBe(22);
    expect(parseJsonContent('{"a": [1]}')).toEqual({ a: [1] });
    expect(parseJsonContent('Email sent')).toBe('Email sent');
    expect(parseJsonContent('')).toBe('');
  });
});
