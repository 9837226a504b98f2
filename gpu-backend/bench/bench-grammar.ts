// `npm run bench:grammar [-- --batches 1,8,16 --steps 16 --threads N]`: what grammar-constrained decoding costs.
// (1) Compile time of the sample schemas on the Mistral v1 vocabulary (32000 ids), cold (first compile of
// each, after the compiler's one-time setup, which is timed apart) and cached. (2) The per-step cost of the
// masks (XGrammar bitmask + applying it to the logits row + advancing the matcher) for every sequence of a
// batch, as a share of the engine step, on the ~125M-parameter random model at batch 1, 8 and 16.
// `--arrivals` instead measures what new grammars cost running streams (grammar-arrivals.ts).
// Prints figures; asserts nothing.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_SAMPLING } from '../../shared/protocol';
import { BENCH_125M_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { Engine } from '../src/model/runtime/engine';
import { GrammarCompilerCache } from '../src/server/grammar/grammar-compiler';
import { grammarSourceOf, type GrammarSource } from '../src/server/grammar/grammar-source';
import { applyMask, GrammarState, prefetchMasks } from '../src/server/grammar/grammar-state';
import { GrammarThread } from '../src/server/grammar/grammar-thread';
import { readModelVocabulary } from '../src/server/grammar/model-vocabulary';
import { SAMPLE_SCHEMAS } from '../src/server/grammar/sample-schemas';
import { Prng } from '../src/server/prng';
import { Sampler } from '../src/server/sampler';
import { onnxCacheDirFrom } from '../src/config';
import { benchArrivals } from './grammar-arrivals';
import { median } from '../../shared/stats';

const USAGE = `usage: npm run bench:grammar [-- options]
  --batches LIST    batch sizes for the mask cost (default 1,8,16)
  --steps N         decode steps measured per batch size (default 16)
  --threads N       ONNX Runtime threads (default 2)
  --model-dir DIR   the ~125M random model (default .models/bench-125m; generated when missing)
  --arrivals        instead: inter-token gaps of running streams while requests with new schemas arrive
  --step-ms N       with --arrivals: fake engine step time (default 20)
  --rounds N        with --arrivals: measured rounds per case (default 3)
  --help            this text`;

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '1,8,16' },
    steps: { type: 'string', default: '16' },
    threads: { type: 'string', default: '2' },
    'model-dir': { type: 'string', default: '.models/bench-125m' },
    arrivals: { type: 'boolean', default: false },
    'step-ms': { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const batches = values.batches.split(',').map(Number);
const steps = Number(values.steps);
const threads = Number(values.threads);
if (batches.some((batch) => !(batch >= 1 && batch <= 64)) || !(steps >= 2) || !(threads >= 1)) {
  console.error(USAGE);
  process.exit(2);
}

const ms = (value: number) => `${value.toFixed(2)} ms`;

function sourceOf(schema: Record<string, unknown>): GrammarSource {
  const built = grammarSourceOf({ type: 'json_schema', schema });
  if (!built.ok) throw new Error(built.message);
  return built.source;
}

async function compileTimes(compilers: GrammarCompilerCache): Promise<void> {
  console.log('\ncompile time per sample schema (v1 vocabulary, 32000 ids): cold / cached');
  for (const [name, schema] of Object.entries(SAMPLE_SCHEMAS)) {
    const source = sourceOf(schema);
    let started = performance.now();
    await compilers.compile(source);
    const cold = performance.now() - started;
    started = performance.now();
    await compilers.compile(source);
    console.log(`  ${name.padEnd(10)} ${ms(cold).padStart(10)} / ${ms(performance.now() - started)}`);
  }
  const generic = grammarSourceOf({ type: 'json_object' });
  if (generic.ok) {
    const started = performance.now();
    await compilers.compile(generic.source);
    console.log(`  ${'json_object'.padEnd(10)} ${ms(performance.now() - started).padStart(10)}`);
  }
}

/** Median per-step engine time and mask time over `steps` decode steps of `batch` constrained sequences. */
async function maskCost(engine: Engine, newState: () => Promise<GrammarState>, batch: number): Promise<{ engine: number; mask: number; sample: number }> {
  const { vocabSize } = engine.config;
  const sequences = await Promise.all(
    Array.from({ length: batch }, async (_, index) => ({
      id: engine.createSequence(),
      state: await newState(),
      sampler: new Sampler({ ...DEFAULT_SAMPLING, temperature: 1 }, new Prng(index, 0)),
      next: [1, ...Array.from({ length: 15 }, (_, i) => 100 + ((index * 37 + i * 11) % 5000))],
      scratch: new Float32Array(vocabSize),
    })),
  );
  const history = { seenTokenIds: new Set<number>(), outputCounts: new Map<number, number>() };
  const times = { engine: [] as number[], mask: [] as number[], sample: [] as number[] };
  for (let step = -1; step < steps; step++) {
    // A no-op for matchers in this thread; the grammar thread fills these masks while the engine steps.
    prefetchMasks(sequences.map((sequence) => sequence.state));
    let started = performance.now();
    const rows = await engine.step(sequences.map((sequence) => ({ sequenceId: sequence.id, tokenIds: sequence.next })));
    const engineMs = performance.now() - started;
    let maskMs = 0;
    let sampleMs = 0;
    for (const [index, sequence] of sequences.entries()) {
      started = performance.now();
      const mask = await sequence.state.mask();
      const row = mask ? applyMask(rows[index], mask, sequence.scratch) : rows[index];
      maskMs += performance.now() - started;
      started = performance.now();
      const { tokenId } = sequence.sampler.sample(row, history);
      sampleMs += performance.now() - started;
      started = performance.now();
      sequence.state.accept(tokenId);
      maskMs += performance.now() - started;
      sequence.next = [tokenId];
      if (sequence.state.terminated) {
        // A finished answer: the next one starts over (making the matcher is not part of a step).
        sequence.state.dispose();
        sequence.state = await newState();
      }
    }
    if (step < 0) continue; // the prefill step
    times.engine.push(engineMs);
    times.mask.push(maskMs);
    times.sample.push(sampleMs);
  }
  for (const sequence of sequences) {
    sequence.state.dispose();
    engine.releaseSequence(sequence.id);
  }
  return { engine: median(times.engine), mask: median(times.mask), sample: median(times.sample) };
}

async function main(): Promise<void> {
  const modelDir = await ensureRandomModel(path.resolve(values['model-dir']), BENCH_125M_CONFIG, 125);
  const vocabulary = await readModelVocabulary(modelDir);
  if ('error' in vocabulary) throw new Error(vocabulary.error);
  let started = performance.now();
  const compilers = await GrammarCompilerCache.create(vocabulary);
  console.log(`vocabulary: ${vocabulary.source}; compiler setup (tokenizer info + first compile): ${ms(performance.now() - started)}`);
  await compileTimes(compilers);

  started = performance.now();
  const engine = await Engine.load({
    modelDir,
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: threads,
    maxSequences: Math.max(...batches),
    onnxCacheDir: onnxCacheDirFrom(process.env),
  });
  console.log(`\n~125M model (fp32, ${threads} threads) loaded in ${ms(performance.now() - started)}; mask cost per decode step, median of ${steps} steps:`);
  console.log('(masks: the time this thread spends on them; "thread": filled by the grammar thread during the engine step)');
  console.log('  grammar      matchers  batch   engine step   masks (all rows)   share   (sampling, for scale)');
  const grammarThread = new GrammarThread(modelDir, console.log);
  try {
    for (const [name, source] of [
      ['strings', sourceOf(SAMPLE_SCHEMAS.strings)],
      ['json_object', (grammarSourceOf({ type: 'json_object' }) as { source: GrammarSource }).source],
    ] as const) {
      const compiled = await compilers.compile(source);
      const where = {
        here: () => GrammarState.create(compilers.xgrammar, compiled, source, null, vocabulary.vocabSize),
        thread: async () => (await grammarThread.prepare(source, 1))[0],
      };
      for (const batch of batches) {
        for (const [place, newState] of Object.entries(where)) {
          const cost = await maskCost(engine, newState, batch);
          const share = ((100 * cost.mask) / cost.engine).toFixed(1);
          console.log(
            `  ${name.padEnd(12)} ${place.padEnd(8)} ${String(batch).padStart(5)} ${ms(cost.engine).padStart(13)} ${ms(cost.mask).padStart(18)} ${`${share}%`.padStart(7)}   (${ms(cost.sample)})`,
          );
        }
      }
    }
  } finally {
    await grammarThread.close();
    await engine.dispose();
  }
}

if (values.arrivals) await benchArrivals({ stepMillis: Number(values['step-ms']), running: 8, arriving: 8, rounds: Number(values.rounds) });
else await main();
