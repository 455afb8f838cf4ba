#!/usr/bin/env node
// Portable reproducibility check: the exported gates of `run --config ci` against the committed
// reference (.ci/expected-gates.pt), within a tolerance, instead of byte equality.
//
// Why not bytes: ONNX Runtime's CPU kernels (MLAS) pick their GEMM/softmax kernels from CPUID at
// start-up (SSE / AVX2+FMA3 / AVX-512F / AMX), with no switch to pin one; each sums in a different
// order, so fp32 results differ in the last bits between CPUs (threads are already fixed to 1 by
// configs/ci.json). Such last-bit differences stay last-bit in the fp32 gates, but flip the bf16
// rounding of a few projection entries in the export, which changes the checksum.
//
// Tolerance (measured by perturbing every initial fp32 gate weight by one ulp, then 300 steps:
// fp32 tensors moved by <= 6e-7 of their largest entry; in bf16 tensors 11 of 98,576 entries moved,
// each by one bf16 ulp):
//   float32 tensors: max |a - b| <= 1e-5 x max |b| (17x the measured drift);
//   bf16/fp16 tensors: every entry within one ulp of the stored type (plus the fp32 allowance, for
//   entries near zero), and at most 1 % of entries
//   differing. A real change (a step more or less, another seed, another recipe) moves most
//   entries by many ulps and fails both.
// Usage: node .ci/compare-gates.mjs <exported.pt> <reference.pt>   (exit 0 = within tolerance)
import { readGatePt } from '../dist/export/index.js';
import { gateStateDtypes, GATE_STATE_KEYS } from '../dist/gate/gate-tensors.js';

export const FP32_REL_TOL = 1e-5;
export const HALF_MAX_DIFFERING = 0.01;

/** One ulp of a value stored with `mantissaBits` explicit mantissa bits (bf16: 7, fp16: 10). */
function ulp(x, mantissaBits) {
  const a = Math.abs(x);
  if (a === 0) return 2 ** -133;
  return 2 ** (Math.floor(Math.log2(a)) - mantissaBits);
}

export function compareGateSets(a, b) {
  const problems = [];
  const rows = [];
  for (const k of ['D', 'H', 'G', 'r', 'S', 'modelDtype']) if (a[k] !== b[k]) problems.push(`${k} ${a[k]} != reference ${b[k]}`);
  if (JSON.stringify(a.layers) !== JSON.stringify(b.layers)) problems.push(`layers ${JSON.stringify(a.layers)} != reference ${JSON.stringify(b.layers)}`);
  if (problems.length) return { ok: false, problems, rows };
  const dtypes = gateStateDtypes(b.modelDtype);
  b.layers.forEach((layer, i) => {
    for (const key of GATE_STATE_KEYS) {
      const x = a.params[i][key];
      const y = b.params[i][key];
      let maxDiff = 0;
      let scale = 0;
      let differing = 0;
      let beyondUlp = 0;
      const bits = dtypes[key] === 'bfloat16' ? 7 : dtypes[key] === 'float16' ? 10 : 23;
      for (const v of y) scale = Math.max(scale, Math.abs(v));
      for (let j = 0; j < y.length; j++) {
        const d = Math.abs(x[j] - y[j]);
        maxDiff = Math.max(maxDiff, d);
        if (d > 0) differing++;
        // one rounding step of the stored type on top of the fp32 drift
        if (d > ulp(Math.max(Math.abs(x[j]), Math.abs(y[j])), bits) + FP32_REL_TOL * scale) beyondUlp++;
      }
      const rel = maxDiff / (scale || 1);
      const name = `layer ${layer} ${key} (${dtypes[key]})`;
      rows.push({ name, rel, differing, n: y.length });
      if (bits === 23) {
        if (rel > FP32_REL_TOL) problems.push(`${name}: max difference ${rel.toExponential(2)} of its largest entry > ${FP32_REL_TOL}`);
      } else {
        if (beyondUlp > 0) problems.push(`${name}: ${beyondUlp} entries differ by more than one ${dtypes[key]} ulp (+ ${FP32_REL_TOL} of the largest entry)`);
        if (differing > HALF_MAX_DIFFERING * y.length) problems.push(`${name}: ${differing} of ${y.length} entries differ (> ${100 * HALF_MAX_DIFFERING} %)`);
      }
    }
  });
  return { ok: problems.length === 0, problems, rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, reference] = process.argv.slice(2);
  if (!file || !reference) {
    process.stderr.write('usage: node .ci/compare-gates.mjs <exported.pt> <reference.pt>\n');
    process.exit(2);
  }
  const r = compareGateSets(await readGatePt(file), await readGatePt(reference));
  const worst = r.rows.reduce((m, x) => (x.rel > m.rel ? x : m), { rel: 0, name: '-' });
  const changed = r.rows.reduce((s, x) => s + x.differing, 0);
  const total = r.rows.reduce((s, x) => s + x.n, 0);
  process.stdout.write(`gates vs reference: ${changed} of ${total} values differ; largest relative difference ${worst.rel.toExponential(2)} (${worst.name})\n`);
  for (const p of r.problems) process.stdout.write(`  ${p}\n`);
  process.stdout.write(r.ok ? 'within tolerance\n' : 'OUT OF TOLERANCE\n');
  process.exit(r.ok ? 0 : 1);
}
