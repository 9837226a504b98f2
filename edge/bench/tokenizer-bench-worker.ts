// The workerd side of the tokenizer benchmark: each request does one measured piece of work so the Node driver
// (bench-tokenizer.ts) can time it from outside. workerd freezes clocks during synchronous work, so timing
// inside the isolate would read zero.

import mistralTokenizerJs from 'mistral-tokenizer-js';
import asset from '../generated/tokenizer.json';
import { encodeChat } from '../src/tokenizer/chat-template';
import { Tokenizer } from '../src/tokenizer/tokenizer';
import type { TokenizerAsset } from '../src/tokenizer/tokenizer-asset';

const TEXT_BYTES = 100 * 1024;
let tokenizer: Tokenizer | undefined;
let uncached: Tokenizer | undefined;
let corpus: string | undefined;
let prompts: string[] = [];

/** Deterministic English-like text: Zipf-distributed words (real vocabulary words and made-up ones), numbers,
 * punctuation, paragraphs, some CJK and emoji, so the chunk cache sees a realistic mix of repeats. */
function makeText(bytes: number, seed: number, vocabulary: string[]): string {
  let state = seed >>> 0;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const syllables = ['ka', 'lo', 'mi', 'ter', 'ran', 'vel', 'sto', 'pre', 'ing', 'qua', 'zor', 'ble', 'un', 'dis', 'ment'];
  const lexicon: string[] = [];
  for (const piece of vocabulary) if (/^\u2581[a-z]{3,}$/.test(piece) && lexicon.length < 3000) lexicon.push(piece.slice(1));
  for (let index = 0; index < 3000; index++) {
    let word = '';
    for (let count = 2 + Math.floor(random() * 3); count > 0; count--) word += syllables[Math.floor(random() * syllables.length)];
    lexicon.push(word);
  }
  for (let index = lexicon.length - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [lexicon[index], lexicon[other]] = [lexicon[other], lexicon[index]];
  }
  const zipf = () => Math.min(lexicon.length - 1, Math.floor(Math.exp(random() * Math.log(lexicon.length)) - 1));
  const encoder = new TextEncoder();
  const paragraphs: string[] = [];
  let size = 0;
  while (size < bytes) {
    let paragraph = '';
    for (let sentence = 3 + Math.floor(random() * 5); sentence > 0; sentence--) {
      const words: string[] = [];
      for (let count = 6 + Math.floor(random() * 20); count > 0; count--) {
        const roll = random();
        words.push(roll < 0.04 ? String(Math.floor(random() * 10000)) : roll < 0.05 ? '東京の天気' : roll < 0.055 ? '🦙' : lexicon[zipf()]);
        if (random() < 0.08) words[words.length - 1] += ',';
      }
      words[0] = words[0].charAt(0).toUpperCase() + words[0].slice(1);
      paragraph += `${words.join(' ')}${random() < 0.9 ? '.' : '?'} `;
    }
    paragraphs.push(paragraph.trimEnd());
    size += encoder.encode(paragraph).length + 2;
  }
  return paragraphs.join('\n\n');
}

function setup(): Response {
  corpus ??= makeText(TEXT_BYTES, 1, (asset as TokenizerAsset).pieces);
  tokenizer ??= Tokenizer.fromAsset(asset as TokenizerAsset);
  uncached ??= Tokenizer.fromAsset(asset as TokenizerAsset, { cacheChunks: false });
  const tokenCount = tokenizer.encode(corpus).length;
  // ~1000-token prompts (system + user), each with text not seen before, for the per-request figure.
  prompts = Array.from({ length: 64 }, (_, index) => makeText(3150, 1000 + index, (asset as TokenizerAsset).pieces));
  return Response.json({ bytes: new TextEncoder().encode(corpus).length, tokenCount, promptTokens: promptIds(prompts[0]).length });
}

function promptIds(user: string, using: Tokenizer = tokenizer!): number[] {
  return encodeChat(using, [
    { role: 'system', content: 'You are a helpful assistant. Answer briefly.' },
    { role: 'user', content: user },
  ]).tokenIds;
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const iterations = Number(url.searchParams.get('iterations') ?? '1');
    let tokenCount = 0;
    switch (url.pathname) {
      case '/setup':
        return setup();
      case '/noop':
        break;
      case '/build-tables':
        for (let index = 0; index < iterations; index++) tokenCount += Tokenizer.fromAsset(asset as TokenizerAsset).vocabSize;
        break;
      case '/fresh':
        tokenizer = Tokenizer.fromAsset(asset as TokenizerAsset); // empties the chunk cache for a cold pass
        break;
      case '/encode':
        for (let index = 0; index < iterations; index++) tokenCount += tokenizer!.encode(corpus!).length;
        break;
      case '/encode-uncached':
        for (let index = 0; index < iterations; index++) tokenCount += uncached!.encode(corpus!).length;
        break;
      case '/encode-peer':
        for (let index = 0; index < iterations; index++) tokenCount += mistralTokenizerJs.encode(corpus!, false, true).length;
        break;
      case '/prompt':
        // New text each call (cycling through 64), so only common words hit the chunk cache.
        for (let index = 0; index < iterations; index++) tokenCount += promptIds(prompts[index % prompts.length]).length;
        break;
      case '/prompt-uncached':
        for (let index = 0; index < iterations; index++) tokenCount += promptIds(prompts[index % prompts.length], uncached).length;
        break;
      case '/prompt-repeat':
        for (let index = 0; index < iterations; index++) tokenCount += promptIds(prompts[0]).length;
        break;
      default:
        return new Response('not found', { status: 404 });
    }
    return Response.json({ tokenCount });
  },
};
