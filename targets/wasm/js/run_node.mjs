// node CLI runner for wasm artifacts: node run_node.mjs ARTIFACT_DIR IN_DIR OUT_DIR
// IN_DIR/index.json = {name: {dtype, dims, file}} with raw little-endian files beside it (node_runner.py writes
// them); the outputs are written to OUT_DIR the same way, a ZipMap's sequence of maps as {json: FILE} in the index
// with FILE in sparsec/ml_values.py's encoding. Any error: one line on stderr, exit 1.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const TYPED = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
  int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

async function main([artifact, inDir, outDir]) {
  const { load } = await import(pathToFileURL(join(artifact, 'sparsec.mjs')).href);
  const model = await load(artifact);
  const index = JSON.parse(await readFile(join(inDir, 'index.json'), 'utf8'));
  const feeds = {};
  for (const [name, meta] of Object.entries(index)) {
    const Typed = TYPED[meta.dtype];
    const raw = await readFile(join(inDir, meta.file));
    const copy = new Uint8Array(raw.byteLength);
    copy.set(raw);
    feeds[name] = { data: new Typed(copy.buffer), dims: meta.dims };
  }
  const out = await model.run(feeds);
  const written = {};
  let i = 0;
  for (const [name, t] of Object.entries(out)) {
    if (Array.isArray(t)) {
      const file = `o${i++}.json`;
      const seq = t.map((m) => ({ map: [...m.entries()] }));
      await writeFile(join(outDir, file), JSON.stringify({ seq }));
      written[name] = { json: file };
      continue;
    }
    const file = `o${i++}.bin`;
    await writeFile(join(outDir, file), new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    written[name] = { dtype: t.type, dims: t.dims, file };
  }
  await writeFile(join(outDir, 'index.json'), JSON.stringify(written));
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`${String(e?.message ?? e).split('\n')[0]}\n`);
  process.exit(1);
});
