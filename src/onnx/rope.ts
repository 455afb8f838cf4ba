// Rotary inverse frequencies for the rope types our families use, computed the way
// transformers computes them (float32 arithmetic), so positions match to the last bit
// that matters. Pure math; the graph turns positions x inv_freq into cos/sin.
import type { RopeSpec } from '../model/config.js';

const f = Math.fround;

/** Base inverse frequencies 1 / theta^(2i/dim), i < dim/2, in float32 like torch. */
function baseInvFreq(theta: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) out[i] = f(1 / f(Math.pow(theta, f(f(2 * i) / dim))));
  return out;
}

export interface RopeTables {
  invFreq: Float32Array;
  /** multiplies cos and sin (yarn's attention factor); 1 otherwise */
  attentionScale: number;
}

/** Inverse frequencies and cos/sin scale for one rope spec and rotary dimension. */
export function ropeTables(rope: RopeSpec, headDim: number): RopeTables {
  const dim = Math.round(headDim * rope.partialFactor);
  const inv = baseInvFreq(rope.theta, dim);
  switch (rope.type) {
    case 'default':
      return { invFreq: inv, attentionScale: 1 };
    case 'linear':
      return { invFreq: inv.map((x) => f(x / rope.factor!)), attentionScale: 1 };
    case 'llama3':
      return { invFreq: llama3(inv, rope), attentionScale: 1 };
    case 'yarn':
      return yarn(rope, dim);
    default:
      throw new Error(`unsupported rope type ${rope.type}`);
  }
}

// Llama 3.x: long wavelengths are divided by `factor`, short ones kept, a smooth ramp between.
function llama3(inv: Float32Array, rope: RopeSpec): Float32Array {
  const factor = rope.factor!;
  const low = rope.lowFreqFactor!;
  const high = rope.highFreqFactor!;
  const oldCtx = rope.originalMaxPositions!;
  const lowWavelen = f(oldCtx / low);
  const highWavelen = f(oldCtx / high);
  return inv.map((x) => {
    const wavelen = f(f(2 * Math.PI) / x);
    const scaled = wavelen > lowWavelen ? f(x / factor) : x;
    const isMedium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    if (!isMedium) return scaled;
    const smooth = f(f(f(oldCtx / wavelen) - low) / (high - low));
    return f(f(f(1 - smooth) * f(scaled / factor)) + f(smooth * scaled));
  });
}

// YaRN: blend interpolated and extrapolated frequencies with a linear ramp over the
// dimensions between the beta_fast / beta_slow correction points.
function yarn(rope: RopeSpec, dim: number): RopeTables {
  const base = rope.theta;
  const factor = rope.factor!;
  const maxPos = rope.originalMaxPositions!;
  const attentionScale = rope.attentionFactor ?? (factor <= 1 ? 1 : 0.1 * Math.log(factor) + 1);
  const corr = (rot: number) => (dim * Math.log(maxPos / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(corr(rope.betaFast!)), 0);
  let high = Math.min(Math.ceil(corr(rope.betaSlow!)), dim - 1);
  if (low === high) high += 0.001;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const posFreq = f(Math.pow(base, f(f(2 * i) / dim)));
    const extrapolation = f(1 / posFreq);
    const interpolation = f(1 / f(factor * posFreq));
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const extrapolationWeight = f(1 - ramp);
    out[i] = f(f(interpolation * f(1 - extrapolationWeight)) + f(extrapolation * extrapolationWeight));
  }
  return { invFreq: out, attentionScale };
}
