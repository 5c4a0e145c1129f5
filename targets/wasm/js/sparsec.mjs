// sparsec wasm runtime: runs a NAME.sparsec/ artifact compiled with `--target wasm`, in node or a browser.
//
//   import { load } from './sparsec.mjs';
//   const m = await load('path/or/url/of/NAME.sparsec/');
//   const out = await m.run({ x: { data: Float32Array, dims: [2, 64] } });   // or x: Float32Array (static shape)
//   out.y.data  // Float32Array;  out.y.dims  // [2, 32];  out.y.type  // 'float32'
//   out.probabilities  // a ZipMap output (ai.onnx.ml): an Array with one Map {label: probability} per row
//
// The artifact's plan.json lists steps in topological order: "dense" steps run an ONNX segment with
// onnxruntime-web (wasm backend), "sparse" steps run one sparsec kernel from kernels.wasm (TVM, wasm32 + SIMD128)
// through the small C driver linked into it. Every file read is checked against manifest.json's sha256 first.

const ORT_MODULE = 'ort.wasm.min.mjs';
const DESC_INTS = 8; // per kernel argument: data pointer, ndim, dtype code, dtype bits, 4 dims (driver.c)
const PLAN_VERSION = 2; // targets/wasm/plan.py
const DLPACK = { float32: { code: 2, bits: 32 }, uint8: { code: 1, bits: 8 } }; // DLDataTypeCode, bits
const TYPED = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
  int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

function baseUrl(dirOrUrl) {
  if (dirOrUrl instanceof URL) return new URL(dirOrUrl.href.endsWith('/') ? dirOrUrl.href : dirOrUrl.href + '/');
  const s = String(dirOrUrl);
  if (/^[a-z][a-z0-9+.-]*:/i.test(s) && !/^[a-z]:[\\/]/i.test(s)) return new URL(s.endsWith('/') ? s : s + '/');
  if (!isNode) return new URL(s.endsWith('/') ? s : s + '/', globalThis.location?.href);
  return null; // a node file path: resolved in load()
}

async function nodeDirUrl(dir) {
  const { pathToFileURL } = await import('node:url');
  const path = await import('node:path');
  return pathToFileURL(path.resolve(dir) + path.sep);
}

async function readBytes(url) {
  if (url.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    const { fileURLToPath } = await import('node:url');
    const b = await readFile(fileURLToPath(url));
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const r = await fetch(url);
  if (!r.ok) throw new Error(`sparsec: cannot fetch ${url.href}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function sha256Hex(bytes) {
  const subtle = globalThis.crypto?.subtle ?? (await import('node:crypto')).webcrypto.subtle; // node 18: no global
  const digest = await subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function product(dims) {
  return dims.reduce((a, b) => a * b, 1);
}

function sameDims(a, b) {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// A feed as {type, data, dims}: accepts ort.Tensor-likes ({data, dims}) and bare typed arrays for static shapes.
function toTensor(name, value, declared) {
  let data = value;
  let dims = null;
  if (value && !ArrayBuffer.isView(value) && value.data !== undefined) {
    data = value.data;
    dims = Array.from(value.dims ?? [], Number);
  }
  if (!ArrayBuffer.isView(data)) throw new Error(`sparsec: input '${name}' must be a typed array or {data, dims}`);
  if (dims === null) {
    if (!declared.shape.every((d) => Number.isInteger(d))) {
      throw new Error(`sparsec: input '${name}' has a dynamic shape [${declared.shape}]: pass {data, dims}`);
    }
    dims = declared.shape;
  }
  const Want = TYPED[declared.dtype];
  if (Want === undefined || !(data instanceof Want)) {
    throw new Error(`sparsec: input '${name}' must be ${declared.dtype} (${Want?.name}), got ${data.constructor.name}`);
  }
  if (dims.length !== declared.shape.length ||
      declared.shape.some((d, i) => Number.isInteger(d) && d !== dims[i]) || dims.some((d) => !(d >= 0))) {
    throw new Error(`sparsec: input '${name}': dims [${dims}] do not match [${declared.shape}]`);
  }
  if (product(dims) !== data.length) {
    throw new Error(`sparsec: input '${name}': ${data.length} elements for dims [${dims}]`);
  }
  return { type: declared.dtype, data, dims };
}

// ai.onnx.ml ZipMap, which onnxruntime-web runs but cannot return (it returns tensors only): X [N, C] or [C] ->
// N Maps {label: X[n, c]} (int64 labels as Numbers; the plan checked they are exact).
function zipMap(step, x) {
  const dims = Array.from(x.dims, Number);
  const cols = step.labels.length;
  if (x.type !== 'float32' || dims.length < 1 || dims.length > 2 || dims[dims.length - 1] !== cols) {
    throw new Error(`sparsec: ZipMap ${step.name}: input ${x.type} [${dims}], expected float32 [N, ${cols}]`);
  }
  const rows = dims.length === 2 ? dims[0] : 1;
  const out = [];
  for (let r = 0; r < rows; r++) out.push(new Map(step.labels.map((label, c) => [label, x.data[r * cols + c]])));
  return out;
}

class Kernels {
  constructor(instance) {
    this.x = instance.exports;
    if (this.x._initialize) this.x._initialize();
  }

  alloc(nbytes) {
    const p = this.x.sc_alloc(Math.max(nbytes, 1));
    if (p === 0) throw new Error(`sparsec: wasm out of memory (${nbytes} bytes)`);
    return p;
  }

  put(ptr, typed) {
    new Uint8Array(this.x.memory.buffer, ptr, typed.byteLength)
      .set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  }

  lastError() {
    const mem = new Uint8Array(this.x.memory.buffer);
    let p = this.x.sc_last_error();
    let s = '';
    while (mem[p] !== 0 && s.length < 1024) s += String.fromCharCode(mem[p++]);
    return s;
  }

  // args: [{ptr, dims, code, bits}] in the kernel ABI order (internals.md, "Kernel ABI").
  call(symbol, args) {
    const desc = new Int32Array(args.length * DESC_INTS);
    args.forEach((a, i) => desc.set([a.ptr, a.dims.length, a.code, a.bits, ...a.dims], i * DESC_INTS));
    const dp = this.alloc(desc.byteLength);
    try {
      this.put(dp, desc);
      const argv = this.x.sc_pack(args.length, dp);
      if (argv === 0) throw new Error(`sparsec: ${symbol}: malformed kernel arguments`);
      const rc = this.x[symbol](0, argv, args.length, this.x.sc_result());
      if (rc !== 0) throw new Error(`sparsec: kernel ${symbol} failed: ${this.lastError()}`);
    } finally {
      this.x.sc_free(dp);
    }
  }
}

class SparsecModel {
  constructor(ort, plan, sessions, kernels, weightPtrs) {
    this.ort = ort;
    this.plan = plan;
    this.sessions = sessions;
    this.kernels = kernels;
    this.weightPtrs = weightPtrs;
    this.inputs = plan.inputs;
    this.outputs = plan.outputs;
  }

  // feeds: {name: {data, dims} | ort.Tensor | typed array (static shapes)}; returns {name: {type, data, dims}}.
  async run(feeds) {
    const env = new Map();
    const expected = new Set(this.plan.inputs.map((i) => i.name));
    for (const name of Object.keys(feeds)) {
      if (!expected.has(name)) throw new Error(`sparsec: unknown input '${name}' (inputs: ${[...expected]})`);
    }
    for (const decl of this.plan.inputs) {
      if (!(decl.name in feeds)) throw new Error(`sparsec: missing input '${decl.name}'`);
      env.set(decl.name, toTensor(decl.name, feeds[decl.name], decl));
    }
    for (const step of this.plan.steps) {
      if (step.kind === 'dense') await this.runDense(step, env);
      else if (step.kind === 'zipmap') env.set(step.output, zipMap(step, env.get(step.input)));
      else if (step.kind === 'quantize') this.runQuantize(step, env);
      else env.set(step.output, this.runSparse(step, env));
    }
    const out = {};
    for (const o of this.plan.outputs) {
      const t = env.get(o.name);
      out[o.name] = Array.isArray(t) ? t : { type: t.type, data: t.data, dims: Array.from(t.dims, Number) };
    }
    return out;
  }

  async runDense(step, env) {
    const feeds = {};
    for (const name of step.inputs) {
      const t = env.get(name);
      feeds[name] = t instanceof this.ort.Tensor ? t : new this.ort.Tensor(t.type, t.data, t.dims);
    }
    const result = await this.sessions.get(step.file).run(feeds);
    for (const name of step.outputs) env.set(name, result[name]);
  }

  // DynamicQuantizeLinear on kernels.wasm (targets/simd/templates/quantize.py: ORT's bytes), then the int8
  // kernels' scales x_scale * w_scale, each product rounded to float32 as ORT's Mul.
  runQuantize(step, env) {
    const x = env.get(step.x);
    if (x.type !== 'float32') {
      throw new Error(`sparsec: ${step.name}: input '${step.x}' is ${x.type}, expected float32`);
    }
    const dims = Array.from(x.dims, Number);
    const n = x.data.length;
    const y = new Uint8Array(n);
    const scale = new Float32Array([1]);
    const zero = new Uint8Array([0]);
    if (n > 0) {
      const k = this.kernels;
      const owned = [];
      try {
        const xp = k.alloc(x.data.byteLength); owned.push(xp); k.put(xp, x.data);
        const yp = k.alloc(n); owned.push(yp);
        const sp = k.alloc(4); owned.push(sp);
        const zp = k.alloc(1); owned.push(zp);
        k.call(step.kernel, [
          { ptr: xp, dims: [n], ...DLPACK.float32 }, { ptr: yp, dims: [n], ...DLPACK.uint8 },
          { ptr: sp, dims: [1], ...DLPACK.float32 }, { ptr: zp, dims: [1], ...DLPACK.uint8 },
        ]);
        y.set(new Uint8Array(k.x.memory.buffer, yp, n));
        scale[0] = new Float32Array(k.x.memory.buffer, sp, 1)[0];
        zero[0] = new Uint8Array(k.x.memory.buffer, zp, 1)[0];
      } finally {
        for (const p of owned) k.x.sc_free(p);
      }
    }
    const [yName, scaleName, zeroName] = step.outputs;
    env.set(yName, { type: 'uint8', data: y, dims });
    env.set(scaleName, { type: 'float32', data: scale, dims: [] });
    env.set(zeroName, { type: 'uint8', data: zero, dims: [] });
    for (const s of step.scales) {
      const data = Float32Array.from(s.values, (v) => Math.fround(scale[0] * v));
      env.set(s.output, { type: 'float32', data, dims: s.dims });
    }
  }

  runSparse(step, env) {
    const x = env.get(step.x);
    const xd = Array.from(x.dims, Number);
    if (x.type !== step.x_dtype) {
      throw new Error(`sparsec: ${step.name}: input '${step.x}' is ${x.type}, expected ${step.x_dtype}`);
    }
    let kx, ydims, ky;
    if (step.op === 'conv' && step.conv.H === 0) {
      // Sized at run time: the kernel takes X as [B, C, H, W] and derives OH, OW the same way.
      const g = step.conv;
      if (xd.length !== 4 || xd[1] !== g.C) {
        throw new Error(`sparsec: ${step.name}: input dims [${xd}], expected [B, ${g.C}, H, W]`);
      }
      const oh = Math.floor((xd[2] + g.pt + g.pb - g.dh * (g.kh - 1) - 1) / g.sh) + 1;
      const ow = Math.floor((xd[3] + g.pl + g.pr - g.dw * (g.kw - 1) - 1) / g.sw) + 1;
      if (!(xd[2] >= 1 && xd[3] >= 1 && oh >= 1 && ow >= 1)) {
        throw new Error(`sparsec: ${step.name}: input dims [${xd}] give an empty convolution output`);
      }
      kx = xd;
      ydims = [xd[0], step.N, oh, ow];
      ky = [xd[0], step.N, oh * ow];
    } else if (step.op === 'conv') {
      const g = step.conv;
      if (xd.length !== 4 || xd[1] !== g.C || xd[2] !== g.H || xd[3] !== g.W) {
        throw new Error(`sparsec: ${step.name}: input dims [${xd}], expected [B, ${g.C}, ${g.H}, ${g.W}]`);
      }
      kx = [xd[0], g.C, g.H * g.W];
      ydims = [xd[0], step.N, g.OH, g.OW];
      ky = [xd[0], step.N, g.OH * g.OW];
    } else {
      if (xd.length < 2 || xd[xd.length - 1] !== step.K) {
        throw new Error(`sparsec: ${step.name}: input dims [${xd}], expected [..., ${step.K}] (rank >= 2)`);
      }
      const m = product(xd.slice(0, -1));
      kx = [m, step.K];
      ydims = [...xd.slice(0, -1), step.N];
      ky = [m, step.N];
    }
    if (x.data.length !== product(xd)) throw new Error(`sparsec: ${step.name}: input size does not match its dims`);
    const y = new Float32Array(product(ydims));
    if (y.length === 0) return { type: 'float32', data: y, dims: ydims };
    let r = null;
    if (step.residual !== null) {
      r = env.get(step.residual);
      if (r.type !== 'float32' || !sameDims(Array.from(r.dims, Number), ydims) || r.data.length !== y.length) {
        throw new Error(`sparsec: ${step.name}: residual dims [${r.dims}] must equal the output dims [${ydims}]`);
      }
    }
    const k = this.kernels;
    const owned = [];
    try {
      const xp = k.alloc(x.data.byteLength); owned.push(xp); k.put(xp, x.data);
      const args = [{ ptr: xp, dims: kx, ...DLPACK[step.x_dtype] }];
      for (const name of step.args) {
        const meta = this.plan.weights[name];
        if (meta !== undefined) {
          args.push({ ptr: this.weightPtrs.get(name), dims: meta.shape, code: meta.code, bits: meta.bits });
          continue;
        }
        // An int8 kernel's zero point or scale computed at run time (a DynamicQuantizeLinear's): one value, or one
        // per output for a scale; the kernel checks the count.
        const v = env.get(name);
        const want = step.runtime_args[name];
        if (v === undefined || want === undefined || v.type !== want || v.data.length < 1) {
          throw new Error(`sparsec: ${step.name}: input '${name}' is ${v?.type} [${v?.dims}], expected ${want}`);
        }
        const p = k.alloc(v.data.byteLength); owned.push(p); k.put(p, v.data);
        args.push({ ptr: p, dims: [v.data.length], ...DLPACK[want] });
      }
      if (r !== null) {
        const rp = k.alloc(r.data.byteLength); owned.push(rp); k.put(rp, r.data);
        args.push({ ptr: rp, dims: ky, code: 2, bits: 32 });
      }
      const yp = k.alloc(y.byteLength); owned.push(yp);
      args.push({ ptr: yp, dims: ky, code: 2, bits: 32 });
      k.call(step.kernel, args);
      y.set(new Float32Array(k.x.memory.buffer, yp, y.length));
    } finally {
      for (const p of owned) k.x.sc_free(p);
    }
    return { type: 'float32', data: y, dims: ydims };
  }
}

async function instantiateKernels(bytes) {
  const module = await WebAssembly.compile(bytes);
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== 'function') throw new Error(`sparsec: kernels.wasm imports ${imp.module}.${imp.name}`);
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => {}; // emscripten_notify_memory_growth: views are re-made on each use
  }
  return new Kernels(await WebAssembly.instantiate(module, imports));
}

// Load an artifact folder: a node path, a file:// or http(s):// URL, or a URL relative to the page.
// options.numThreads: onnxruntime-web threads (default 1; more need a cross-origin-isolated page in browsers).
export async function load(dirOrUrl, options = {}) {
  const base = baseUrl(dirOrUrl) ?? (await nodeDirUrl(dirOrUrl));
  const manifest = JSON.parse(new TextDecoder().decode(await readBytes(new URL('manifest.json', base))));
  if (manifest.target?.name !== 'wasm') throw new Error(`sparsec: ${base.href} is not a wasm artifact`);
  const checked = async (name) => {
    const bytes = await readBytes(new URL(name, base));
    const want = manifest.files?.[name];
    if (want === undefined) throw new Error(`sparsec: ${name} is not listed in manifest.json`);
    if ((await sha256Hex(bytes)) !== want) throw new Error(`sparsec: ${name} does not match its sha256 in manifest.json`);
    return bytes;
  };
  const plan = JSON.parse(new TextDecoder().decode(await checked('plan.json')));
  if (plan.plan_version !== PLAN_VERSION) {
    throw new Error(`sparsec: plan.json version ${plan.plan_version}, this runner reads ${PLAN_VERSION}`);
  }
  const ort = await import(new URL(ORT_MODULE, base).href);
  ort.env.wasm.numThreads = options.numThreads ?? 1;
  const sessions = new Map();
  for (const step of plan.steps) {
    if (step.kind !== 'dense') continue;
    sessions.set(step.file, await ort.InferenceSession.create(await checked(step.file), {
      executionProviders: ['wasm'],
      // ORT's WeightBiasQuantization would quantize again the float weights sparsec folded out of a QDQ model
      extra: { optimization: { disable_specified_optimizers: 'WeightBiasQuantization' } },
    }));
  }
  let kernels = null;
  const weightPtrs = new Map();
  if (plan.steps.some((s) => s.kind === 'sparse')) {
    kernels = await instantiateKernels(await checked(manifest.kernel_library));
    const blob = await checked('weights.bin');
    for (const [name, w] of Object.entries(plan.weights)) {
      if (w.offset + w.nbytes > blob.byteLength || w.nbytes !== product(w.shape) * (w.bits / 8)) {
        throw new Error(`sparsec: weights.bin is too short or ${name} has a bad size`);
      }
      const p = kernels.alloc(w.nbytes);
      kernels.put(p, blob.subarray(w.offset, w.offset + w.nbytes));
      weightPtrs.set(name, p);
    }
  }
  return new SparsecModel(ort, plan, sessions, kernels, weightPtrs);
}
