import { describe, expect, it } from 'vitest';
import { StopMatcher } from './stop-matcher';

/** Feeds pieces one at a time; returns the released text and whether a stop hit. */
function run(stops: string[], pieces: string[]): { text: string; stopped: boolean } {
  const matcher = new StopMatcher(stops);
  let text = '';
  for (const piece of pieces) {
    const pushed = matcher.push(piece);
    text += pushed.text;
    if (pushed.stopped) return { text, stopped: true };
  }
  return { text: text + matcher.flush(), stopped: false };
}

/** Independent reference: cut the whole text at the earliest occurrence of any stop string. */
function reference(stops: string[], whole: string): { text: string; stopped: boolean } {
  let cut = -1;
  for (const stop of stops) {
    const index = whole.indexOf(stop);
    if (index !== -1 && (cut === -1 || index < cut)) cut = index;
  }
  return cut === -1 ? { text: whole, stopped: false } : { text: whole.slice(0, cut), stopped: true };
}

describe('StopMatcher', () => {
  it('matches a stop string split across pieces and releases only the text before it', () => {
    expect(run(['</end>'], ['Hello <', '/e', 'nd> tail'])).toEqual({ text: 'Hello ', stopped: true });
  });

  it('holds back a possible prefix and releases it once disproved', () => {
    const matcher = new StopMatcher(['STOP']);
    expect(matcher.push('abc ST')).toEqual({ text: 'abc ', stopped: false });
    expect(matcher.push('ill')).toEqual({ text: 'STill', stopped: false });
  });

  it('releases held text at the end when no stop came', () => {
    expect(run(['xyz'], ['ab', 'cx', 'y'])).toEqual({ text: 'abcxy', stopped: false });
  });

  it('picks the earliest of several stop strings, including overlapping ones', () => {
    expect(run(['bcd', 'abcX'], ['a', 'b', 'c', 'd'])).toEqual({ text: 'a', stopped: true });
    expect(run(['aab'], ['a', 'a', 'a', 'b'])).toEqual({ text: 'a', stopped: true });
  });

  it('agrees with a whole-text reference on random splits (seeded)', () => {
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const alphabet = ['a', 'b', 'c', ' ', '\n', '🙂', '日'];
    for (let trial = 0; trial < 500; trial++) {
      const word = (length: number) => Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      const whole = word(5 + Math.floor(random() * 30));
      const stops = Array.from({ length: 1 + Math.floor(random() * 3) }, () => word(1 + Math.floor(random() * 3)));
      const pieces: string[] = [];
      for (let i = 0; i < whole.length; ) {
        const step = 1 + Math.floor(random() * 4);
        pieces.push(whole.slice(i, i + step));
        i += step;
      }
      expect(run(stops, pieces), JSON.stringify({ whole, stops, pieces })).toEqual(reference(stops, whole));
    }
  });
});
