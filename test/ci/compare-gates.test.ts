// The portable reproducibility check of .ci/run: the committed reference is the file whose
// checksum .ci/expected-gates.sha256 records, and the tolerance passes rounding-level changes
// while failing real ones.
import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { readGatePt } from '../../src/export/index.js';
import type { GateSet } from '../../src/gate/types.js';
// @ts-expect-error plain ES module without types
import { compareGateSets } from '../../.ci/compare-gates.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REF = path.join(ROOT, '.ci', 'expected-gates.pt');
const compare = compareGateSets as (a: GateSet, b: GateSet) => { ok: boolean; problems: string[] };

const clone = (g: GateSet): GateSet => ({ ...g, params: g.params.map((p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Float32Array.from(v as Float32Array)])) as GateSet['params'][number]) });

describe('.ci reproducibility reference', () => {
  it('is the file whose sha256 .ci/expected-gates.sha256 records', () => {
    const want = readFileSync(path.join(ROOT, '.ci', 'expected-gates.sha256'), 'utf8').split(/\s+/)[0];
    expect(createHash('sha256').update(readFileSync(REF)).digest('hex')).toBe(want);
  });

  it('accepts itself, and one-bf16-ulp flips of a few projection entries', async () => {
    const ref = await readGatePt(REF);
    expect(compare(ref, ref).ok).toBe(true);
    const g = clone(ref);
    const w = g.params[0]!['q_proj.weight'];
    for (const j of [3, 500, 9000]) w[j] = w[j]! + Math.sign(w[j]!) * 2 ** (Math.floor(Math.log2(Math.abs(w[j]!))) - 7);
    g.params[1]!['k_base'][7] = g.params[1]!['k_base'][7]! * (1 + 1e-7);
    const r = compare(g, ref);
    expect(r.problems).toEqual([]);
  });

  it('rejects a change of many projection entries, a two-ulp change and an fp32 drift', async () => {
    const ref = await readGatePt(REF);
    const many = clone(ref);
    const w = many.params[2]!['k_proj.weight'];
    for (let j = 0; j < w.length; j += 50) w[j] = w[j]! + Math.sign(w[j]!) * 2 ** (Math.floor(Math.log2(Math.abs(w[j]!))) - 7);
    expect(compare(many, ref).problems.join('\n')).toMatch(/layer 2 k_proj.weight .*entries differ \(> 1 %\)/);
    const twoUlp = clone(ref);
    const v = twoUlp.params[0]!['q_proj.weight'];
    v[10] = v[10]! * (1 + 2 ** -5);
    expect(compare(twoUlp, ref).problems.join('\n')).toMatch(/more than one bfloat16 ulp/);
    const drift = clone(ref);
    drift.params[3]!['k_base'][0] = drift.params[3]!['k_base'][0]! + 1e-4 * Math.max(...drift.params[3]!['k_base'].map(Math.abs));
    expect(compare(drift, ref).problems.join('\n')).toMatch(/layer 3 k_base .*> 0.00001/);
  });
});
