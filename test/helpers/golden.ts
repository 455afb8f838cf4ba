// Access to the Python reference's golden fixtures (tools/reference/README.md is the contract).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { openSafetensors, type SafetensorsIndex } from '../../src/model/safetensors/index.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures', import.meta.url));
export const MODEL_NAMES = ['llama', 'qwen2', 'qwen3', 'gemma3'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export function modelDir(name: ModelName): string {
  return path.join(FIXTURES, 'models', name);
}

export interface Golden {
  st: SafetensorsIndex;
  meta: any;
  f32(key: string): Float32Array;
  ids(key: string): number[];
}

export function golden(name: string): Golden {
  const st = openSafetensors(path.join(FIXTURES, 'golden', `${name}.safetensors`));
  const meta = JSON.parse(readFileSync(path.join(FIXTURES, 'golden', `${name}.json`), 'utf8'));
  return {
    st,
    meta,
    f32: (key) => st.readF32(key),
    ids: (key) => {
      const raw = st.readRawSync(key);
      const v = new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      return Array.from(v, Number);
    },
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Tiny models laid out as the real hub checkpoints (tools/reference/layout_golden.py, part D). */
export const LAYOUT_NAMES = ['qwen3-8b', 'qwen2.5-7b-instruct-1m', 'llama-3.1-8b-instruct', 'gemma-3-12b-it'] as const;
export type LayoutName = (typeof LAYOUT_NAMES)[number];

export function layoutDir(name: LayoutName): string {
  return path.join(FIXTURES, 'layouts', name);
}

/** Largest |a - b| relative to the rounding step of a 16-bit float holding b: the store keeps fp16/bf16. */
export function maxHalfRoundingRatio(stored: ArrayLike<number>, want: ArrayLike<number>, mantissaBits: 7 | 10, absSlack = 0): number {
  if (stored.length !== want.length) throw new Error(`length ${stored.length} vs ${want.length}`);
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const ulp = Math.max(Math.abs(want[i]!), 2 ** -14) * 2 ** -mantissaBits;
    m = Math.max(m, Math.max(0, Math.abs(stored[i]! - want[i]!) - absSlack) / ulp);
  }
  return m;
}

/** The KVzip prompt ids a golden was scored with (part B's `kvzip.*_ids`). */
export function kvzipPrompts(g: Golden) {
  return {
    prefixIds: g.ids('kvzip.prefix_ids'),
    postfixIds: g.ids('kvzip.postfix_ids'),
    repeatFirstIds: g.ids('kvzip.repeat_first_ids'),
    repeatNextIds: g.ids('kvzip.repeat_next_ids'),
    prevPostfixTokens: g.meta.kvzip.prev_postfix_tokens as number,
  };
}
