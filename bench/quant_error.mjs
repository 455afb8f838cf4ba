// Issue 16: how far each 8-bit form lands from the 16-bit attention inputs of a real store,
// to choose the dtype and the scale block by measurement. Per layer: relative RMS error
// ||deq - x|| / ||x|| and the worst per-row relative error, over every row of the store.
//   node bench/quant_error.mjs STORE [blocks, default "D,128,64,32"] > result.json   (needs dist/: npx tsc)
import { readLayer, readManifest } from '../dist/features/index.js';
import { quantize16, dequantizeRows } from '../dist/features/quant.js';

const [store, blocksArg = 'D,128,64,32'] = process.argv.slice(2);
const m = await readManifest(store);
if (m.hiddenDtype !== 'bfloat16' && m.hiddenDtype !== 'float16') throw new Error(`${store}: needs a 16-bit store, not ${m.hiddenDtype}`);
const D = m.model.D;
const blocks = [...new Set(blocksArg.split(',').map((b) => (b === 'D' ? D : Number(b))).filter((b) => b <= D && D % b === 0))];
const f32 = (bits) => {
  const out = new Float32Array(bits.length);
  if (m.hiddenDtype === 'bfloat16') new Uint32Array(out.buffer).set(Array.from(bits, (b) => b << 16));
  else for (let i = 0; i < bits.length; i++) out[i] = dequantizeRows('int8', new Int8Array([1]), new Float32Array([half(bits[i])]), 1, 1)[0];
  return out;
};
function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, f = h & 0x3ff;
  return e === 0 ? s * f * 2 ** -24 : s * (1 + f / 1024) * 2 ** (e - 15);
}
const results = [];
for (const layer of m.model.scoredLayers) {
  const acc = {};
  for await (const chunk of readLayer(store, layer)) {
    const x = f32(chunk.hidden);
    for (const dtype of ['int8', 'float8e4m3']) {
      for (const block of blocks) {
        const q = quantize16(dtype, chunk.hidden, m.hiddenDtype, D, block);
        const y = dequantizeRows(dtype, q.codes, q.scales, D, block);
        const a = (acc[`${dtype}/${block}`] ??= { err: 0, ref: 0, worstRow: 0 });
        for (let r = 0; r < chunk.tokens; r++) {
          let e = 0, n = 0;
          for (let c = r * D; c < (r + 1) * D; c++) { const d = y[c] - x[c]; e += d * d; n += x[c] * x[c]; }
          a.err += e; a.ref += n;
          if (n > 0) a.worstRow = Math.max(a.worstRow, Math.sqrt(e / n));
        }
      }
    }
  }
  for (const [form, a] of Object.entries(acc)) results.push({ layer, form, relRms: Math.sqrt(a.err / a.ref), worstRowRel: a.worstRow });
}
const byForm = {};
for (const r of results) (byForm[r.form] ??= []).push(r.relRms);
console.log(JSON.stringify({ store, model: m.model.id, D, hiddenDtype: m.hiddenDtype, meanRelRms: Object.fromEntries(Object.entries(byForm).map(([k, v]) => [k, v.reduce((a, b) => a + b, 0) / v.length])), layers: results }, null, 1));
