// node wasm_node.mjs ARTIFACT DENSE_ONNX FEEDS_DIR ROUNDS -> one JSON line on stdout
// In ONE node process: onnxruntime-web (wasm backend, the artifact's copy) on the dense model vs the sparsec wasm
// artifact, same feeds, 1 thread each, interleaved rounds (A B, then B A), medians in ms.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const TYPED = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, float64: Float64Array };

async function readFeeds(dir) {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  const feeds = {};
  for (const [name, meta] of Object.entries(index)) {
    const raw = await readFile(join(dir, meta.file));
    const copy = new Uint8Array(raw.byteLength);
    copy.set(raw);
    feeds[name] = { type: meta.dtype, data: new TYPED[meta.dtype](copy.buffer), dims: meta.dims };
  }
  return feeds;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function maxRelDiff(a, b) {
  if (!(a instanceof Float32Array)) return NaN;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-30);
}

const [artifact, dense, feedsDir, roundsArg] = process.argv.slice(2);
const ort = await import(pathToFileURL(join(artifact, 'ort.wasm.min.mjs')).href);
ort.env.wasm.numThreads = 1;
const { load } = await import(pathToFileURL(join(artifact, 'sparsec.mjs')).href);
const model = await load(artifact, { numThreads: 1 });
const session = await ort.InferenceSession.create(await readFile(dense), { executionProviders: ['wasm'] });
const feeds = await readFeeds(feedsDir);
const ortFeeds = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));
const runs = {
  ort: async () => session.run(ortFeeds),
  sparsec: async () => model.run(feeds),
};
const first = { ort: await runs.ort(), sparsec: await runs.sparsec() };
const name = session.outputNames.find((n) => first.ort[n].type === 'float32') ?? session.outputNames[0];
// (a baseline that is another model, as benchmarks/wasm_calibrate.py times, may share no output with the artifact)
const diff = first.sparsec[name] ? maxRelDiff(first.sparsec[name].data, first.ort[name].data) : NaN;
for (let i = 0; i < 2; i++) { await runs.ort(); await runs.sparsec(); }
const times = { ort: [], sparsec: [] };
for (let r = 0; r < Number(roundsArg); r++) {
  for (const k of r % 2 ? ['sparsec', 'ort'] : ['ort', 'sparsec']) {
    const t0 = performance.now();
    await runs[k]();
    times[k].push(performance.now() - t0);
  }
}
const ortMs = median(times.ort), spMs = median(times.sparsec);
console.log(JSON.stringify({ ort_ms: ortMs, sparsec_ms: spMs, speedup: ortMs / spMs, rounds: Number(roundsArg),
  output: name, max_rel_diff: diff, node: process.versions.node }));
