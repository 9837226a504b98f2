// The edge half of the sampling field table's contract: every row is a field of both public schemas (by its
// OpenAI name, or the one its route reads), with the row's public range, and maps to its protocol name.

import { describe, expect, it } from 'vitest';
import { inRange, pastRange, refusalParam } from '../../../shared/sampling-field-samples';
import { SAMPLING_FIELDS, type SamplingFieldName } from '../../../shared/sampling-fields';
import { toSampling } from '../generation/generation-setup';
import { validate } from './read-request';
import { chatRequestSchema, completionRequestSchema } from './request-schemas';

const NAMES = Object.keys(SAMPLING_FIELDS) as SamplingFieldName[];
/** Rows the routes set themselves, by the public field each comes from (null: backend-only). */
const ROUTE_SET: Partial<Record<SamplingFieldName, string | null>> = { maxTokens: 'max_tokens', n: 'n', logprobs: 'logprobs', stopTokenIds: null };
const chat = (fields: object) => validate(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...fields });
const completion = (fields: object) => validate(completionRequestSchema, { model: 'm', prompt: 'x', ...fields });

describe('edge request schemas from the sampling field table', () => {
  it('every row has a public name in both schemas or is set by the routes', () => {
    const chatFields = Object.keys(chatRequestSchema.innerType().shape);
    const completionFields = Object.keys(completionRequestSchema.innerType().shape);
    for (const name of NAMES) {
      const publicName = SAMPLING_FIELDS[name].openAiName ?? ROUTE_SET[name];
      expect(publicName, `${name}: a public name, or listed in ROUTE_SET`).not.toBeUndefined();
      if (publicName === null) continue;
      expect(chatFields, name).toContain(publicName);
      expect(completionFields, name).toContain(publicName);
    }
  });

  it('every public row keeps its public range and maps to its protocol name', () => {
    for (const name of NAMES) {
      const spec = SAMPLING_FIELDS[name];
      if (spec.openAiName === null) continue;
      const value = inRange(spec, 'public');
      expect(toSampling(chat({ [spec.openAiName]: value }), 16, undefined)[name], name).toEqual(value);
      expect(toSampling(completion({ [spec.openAiName]: value }), 16, undefined)[name], name).toEqual(value);
      const past = pastRange(spec, 'public');
      if (past === null) continue;
      expect(
        refusalParam(() => chat({ [spec.openAiName]: past })),
        name,
      ).toBe(spec.openAiName);
      expect(
        refusalParam(() => completion({ [spec.openAiName]: past })),
        name,
      ).toBe(spec.openAiName);
    }
  });

  it('null means not set, and absent fields stay absent so the backend applies its defaults', () => {
    expect(toSampling(chat({ temperature: null, top_p: null, ignore_eos: null }), 16, undefined)).toEqual({ maxTokens: 16, n: 1 });
    expect(refusalParam(() => chat({ temperature: 2.5 }))).toBe('temperature');
  });
});
