// The backend half of the sampling field table's contract: every row is a field of the `sampling` schema
// with the row's range, and an absent field gets the row's default (the edge half: edge/src/api/sampling-fields.test.ts).

import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING } from '../../../shared/protocol';
import { inRange, pastRange, refusalParam } from '../../../shared/sampling-field-samples';
import { SAMPLING_FIELDS, type SamplingFieldName } from '../../../shared/sampling-fields';
import { RequestSchema } from './request-schema';

const NAMES = Object.keys(SAMPLING_FIELDS) as SamplingFieldName[];
const schema = new RequestSchema({ vocabSize: 100, maxModelLen: 4096, maxChoices: 4 });
const parseSampling = (sampling: Record<string, unknown>) => schema.parse({ requestId: 'r', tokenIds: [1], sampling });

describe('backend request schema from the sampling field table', () => {
  it('every row is a field, accepted in range and refused past it naming sampling.<field>', () => {
    for (const name of NAMES) {
      const spec = SAMPLING_FIELDS[name];
      expect(parseSampling({ [name]: inRange(spec, 'protocol') }).sampling[name], name).toEqual(inRange(spec, 'protocol'));
      const past = pastRange(spec, 'protocol');
      if (past !== null)
        expect(
          refusalParam(() => parseSampling({ [name]: past })),
          name,
        ).toBe(`sampling.${name}`);
    }
  });

  it("an empty sampling object gets DEFAULT_SAMPLING, and those are the values the sampler's docs promise", () => {
    expect(schema.parse({ requestId: 'r', tokenIds: [1] }).sampling).toEqual(DEFAULT_SAMPLING);
    expect(DEFAULT_SAMPLING).toEqual({
      temperature: 1,
      topP: 1,
      topK: 0,
      minP: 0,
      presencePenalty: 0,
      frequencyPenalty: 0,
      repetitionPenalty: 1,
      maxTokens: 256,
      stopTokenIds: [],
      ignoreEos: false,
      n: 1,
    });
  });

  it('the bounds of the served model replace the open ones (context length, vocabulary, running choices)', () => {
    expect(refusalParam(() => parseSampling({ maxTokens: 4097 }))).toBe('sampling.maxTokens');
    expect(refusalParam(() => parseSampling({ stopTokenIds: [100] }))).toBe('sampling.stopTokenIds[0]');
    expect(refusalParam(() => parseSampling({ n: 5 }))).toBe('sampling.n');
    expect(parseSampling({ temperature: 2.5 }).sampling.temperature).toBe(2.5);
  });
});
