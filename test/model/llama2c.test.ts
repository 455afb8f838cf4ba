import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertLlama2c, rotaryRowOrder } from '../../src/model/llama2c.js';
import { openModel } from '../../src/model/load.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { ensureGraphs } from '../../src/onnx/index.js';
import { createSession } from '../../src/runtime/session.js';
import { generateGreedy } from '../../src/runtime/generate.js';
import { UserError } from '../../src/util/errors.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtureDir = path.join(here, '..', 'fixtures', 'llama2c');
const golden = JSON.parse(readFileSync(path.join(fixtureDir, 'stories260K-greedy.json'), 'utf8')) as {
  prompt: string;
  steps: number;
  promptTokens: number;
  ids: number[];
  text: string;
  tokenization: { cases: { text: string; ids: number[] }[] };
};

/** stories260K (llama2.c's tiny pretrained GQA model), committed beside the golden (see its README for provenance). */
const stories = { bin: path.join(fixtureDir, 'stories260K.bin'), tok: path.join(fixtureDir, 'tok512.bin') };

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'fkz-llama2c-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function expectUserError(p: Promise<unknown>, file: string, problem: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg.startsWith(`${file}: `), msg).toBe(true);
  expect(msg).toMatch(problem);
  expect(msg).not.toContain('\n');
}

// ---------------------------------------------------------------------------------------------
// A tiny synthetic llama2.c checkpoint + tokenizer, written the way llama2.c's exporters write them.

interface TinyDims {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seqLen: number;
  shared: boolean;
}
const TINY: TinyDims = { dim: 16, hidden: 24, layers: 2, heads: 4, kvHeads: 2, vocab: 0, seqLen: 32, shared: true };

/** sentencepiece-like vocab: <unk>, BOS, EOS, 256 bytes, then pieces with descending scores */
function tinyVocab(): { pieces: string[]; scores: number[] } {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n'];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const merged = [' t', 'he', ' the', ' a', 'at', ' c', ' cat'];
  const chars = [' ', 'e', 't', 'a', 'h', 'c', 's', 'é'];
  const scores = pieces.map(() => 0);
  merged.forEach((p, i) => {
    pieces.push(p);
    scores.push(-i);
  });
  chars.forEach((p, i) => {
    pieces.push(p);
    scores.push(-merged.length - i);
  });
  return { pieces, scores };
}

function tokenizerBytes(pieces: string[], scores: number[]): Buffer {
  const parts = pieces.map((p) => Buffer.from(p, 'utf8'));
  const out: Buffer[] = [Buffer.alloc(4)];
  out[0]!.writeUInt32LE(Math.max(...parts.map((b) => b.length)));
  parts.forEach((b, i) => {
    const head = Buffer.alloc(8);
    head.writeFloatLE(scores[i]!, 0);
    head.writeInt32LE(b.length, 4);
    out.push(head, b);
  });
  return Buffer.concat(out);
}

/** Header + weights in run.c's order; weight k of the file holds value k * 1e-3 so positions can be traced. */
function checkpointBytes(d: TinyDims): { bytes: Buffer; floats: Float32Array } {
  const hd = d.dim / d.heads;
  const kv = d.kvHeads * hd;
  const L = d.layers;
  const count =
    d.vocab * d.dim + L * d.dim + L * d.dim * d.dim + 2 * L * d.dim * kv + L * d.dim * d.dim + L * d.dim + 3 * L * d.dim * d.hidden + d.dim + d.seqLen * hd + (d.shared ? 0 : d.vocab * d.dim);
  const floats = Float32Array.from({ length: count }, (_, k) => k * 1e-3);
  const header = Buffer.alloc(28);
  [d.dim, d.hidden, d.layers, d.heads, d.kvHeads, d.shared ? d.vocab : -d.vocab, d.seqLen].forEach((v, i) => header.writeInt32LE(v, i * 4));
  return { bytes: Buffer.concat([header, Buffer.from(floats.buffer)]), floats };
}

function writeTiny(dir: string, over: Partial<TinyDims> = {}) {
  mkdirSync(dir, { recursive: true });
  const { pieces, scores } = tinyVocab();
  const dims = { ...TINY, vocab: pieces.length, ...over };
  const ck = checkpointBytes(dims);
  const bin = path.join(dir, 'model.bin');
  const tok = path.join(dir, 'tokenizer.bin');
  writeFileSync(bin, ck.bytes);
  writeFileSync(tok, tokenizerBytes(pieces, scores));
  return { bin, tok, dims, floats: ck.floats, pieces, scores };
}

describe('rotaryRowOrder', () => {
  it('makes HF rotate_half RoPE on permuted rows equal llama2.c interleaved RoPE on the original rows', () => {
    const heads = 2;
    const hd = 8;
    const order = rotaryRowOrder(heads, hd);
    expect(Array.from(order.slice(0, hd))).toEqual([0, 2, 4, 6, 1, 3, 5, 7]);
    expect(Array.from(order.slice(hd))).toEqual([8, 10, 12, 14, 9, 11, 13, 15]);
    // q and k vectors (rows of W x) under both conventions at positions 5 and 2: dot products must agree.
    const q = Array.from({ length: heads * hd }, (_, i) => Math.sin(i + 1));
    const k = Array.from({ length: heads * hd }, (_, i) => Math.cos(3 * i + 2));
    const freq = (i: number) => 1 / Math.pow(10000, (2 * i) / hd);
    const interleaved = (v: number[], pos: number) => {
      const out = v.slice();
      for (let j = 0; j < v.length; j += 2) {
        const a = pos * freq((j % hd) / 2);
        out[j] = v[j]! * Math.cos(a) - v[j + 1]! * Math.sin(a);
        out[j + 1] = v[j]! * Math.sin(a) + v[j + 1]! * Math.cos(a);
      }
      return out;
    };
    const rotateHalf = (v: number[], pos: number) => {
      const out = v.slice();
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < hd / 2; i++) {
          const a = pos * freq(i);
          const x1 = v[h * hd + i]!;
          const x2 = v[h * hd + hd / 2 + i]!;
          out[h * hd + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
          out[h * hd + hd / 2 + i] = x2 * Math.cos(a) + x1 * Math.sin(a);
        }
      }
      return out;
    };
    const perm = (v: number[]) => Array.from(order, (src) => v[src]!);
    const dotHead = (a: number[], b: number[], h: number) => a.slice(h * hd, (h + 1) * hd).reduce((s, x, i) => s + x * b[h * hd + i]!, 0);
    const qa = interleaved(q, 5);
    const ka = interleaved(k, 2);
    const qb = rotateHalf(perm(q), 5);
    const kb = rotateHalf(perm(k), 2);
    for (let h = 0; h < heads; h++) expect(dotHead(qb, kb, h)).toBeCloseTo(dotHead(qa, ka, h), 12);
    // and the permuted rotation is the rotation of the permuted vector, element by element
    expect(qb.map((x) => x.toFixed(12))).toEqual(perm(qa).map((x) => x.toFixed(12)));
  });
});

describe('convertLlama2c on a synthetic checkpoint', () => {
  it('maps every weight block to its HF tensor, permuting q/k rows, and writes a loadable folder', async () => {
    const t = writeTiny(path.join(root, 'tiny-src'));
    const out = path.join(root, 'tiny-out');
    const res = await convertLlama2c(t.bin, t.tok, out);
    expect(res.vocab).toBe(t.pieces.length);
    expect(res.tensors).toBe(1 + 9 * TINY.layers + 1); // embed, 9 per layer, final norm (tied head)
    expect(res.config).toMatchObject({ model_type: 'llama', tie_word_embeddings: true, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: TINY.seqLen, num_key_value_heads: 2, head_dim: 4 });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(root).filter((f) => f.includes('.tmp-'))).toEqual([]);

    const model = openModel(out);
    expect(model.spec.rmsNormEps).toBe(1e-5);
    expect(model.spec.tieWordEmbeddings).toBe(true);
    const D = TINY.dim;
    const V = t.pieces.length;
    const hd = D / TINY.heads;
    const kv = TINY.kvHeads * hd;
    // file offsets (in floats) of each block, run.c's order
    const L = TINY.layers;
    const off = { embed: 0, rmsAtt: V * D } as Record<string, number>;
    off.wq = off.rmsAtt! + L * D;
    off.wk = off.wq + L * D * D;
    off.wv = off.wk + L * D * kv;
    off.wo = off.wv + L * D * kv;
    off.rmsFfn = off.wo + L * D * D;
    off.w1 = off.rmsFfn + L * D;
    off.w2 = off.w1 + L * D * TINY.hidden;
    off.w3 = off.w2 + L * D * TINY.hidden;
    off.rmsFinal = off.w3 + L * D * TINY.hidden;
    const src = (block: string, layer: number, per: number) => t.floats.subarray(off[block]! + layer * per, off[block]! + (layer + 1) * per);
    const got = (name: string) => model.weights.readF32(name);

    expect(got('model.embed_tokens.weight')).toEqual(src('embed', 0, V * D));
    expect(got('model.norm.weight')).toEqual(src('rmsFinal', 0, D));
    const l = 1;
    const p = `model.layers.${l}.`;
    expect(got(`${p}input_layernorm.weight`)).toEqual(src('rmsAtt', l, D));
    expect(got(`${p}post_attention_layernorm.weight`)).toEqual(src('rmsFfn', l, D));
    expect(got(`${p}self_attn.v_proj.weight`)).toEqual(src('wv', l, kv * D));
    expect(got(`${p}self_attn.o_proj.weight`)).toEqual(src('wo', l, D * D));
    expect(got(`${p}mlp.gate_proj.weight`)).toEqual(src('w1', l, TINY.hidden * D));
    expect(got(`${p}mlp.down_proj.weight`)).toEqual(src('w2', l, TINY.hidden * D));
    expect(got(`${p}mlp.up_proj.weight`)).toEqual(src('w3', l, TINY.hidden * D));
    const permuted = (w: Float32Array, heads: number) => {
      const order = rotaryRowOrder(heads, hd);
      const outRows = new Float32Array(w.length);
      order.forEach((from, r) => outRows.set(w.subarray(from * D, (from + 1) * D), r * D));
      return outRows;
    };
    expect(got(`${p}self_attn.q_proj.weight`)).toEqual(permuted(src('wq', l, D * D), TINY.heads));
    expect(got(`${p}self_attn.k_proj.weight`)).toEqual(permuted(src('wk', l, kv * D), TINY.kvHeads));
    // row 1 of HF q (head 0, first half, i=1) is llama2.c row 2
    expect(got(`${p}self_attn.q_proj.weight`).subarray(D, 2 * D)).toEqual(src('wq', l, D * D).subarray(2 * D, 3 * D));
  });

  it('writes lm_head when the classifier is not shared (negative vocab_size)', async () => {
    const t = writeTiny(path.join(root, 'unshared-src'), { shared: false });
    const out = path.join(root, 'unshared-out');
    const res = await convertLlama2c(t.bin, t.tok, out);
    expect(res.config.tie_word_embeddings).toBe(false);
    const model = openModel(out);
    const V = t.pieces.length;
    expect(model.weights.readF32('lm_head.weight')).toEqual(t.floats.subarray(t.floats.length - V * TINY.dim));
  });

  it('replaces an earlier conversion but refuses a folder holding other files', async () => {
    const t = writeTiny(path.join(root, 'again-src'));
    const out = path.join(root, 'again-out');
    await convertLlama2c(t.bin, t.tok, out);
    await convertLlama2c(t.bin, t.tok, out);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    writeFileSync(path.join(out, 'notes.txt'), 'mine');
    await expect(convertLlama2c(t.bin, t.tok, out)).rejects.toThrow(/holds other files \(notes\.txt\)/);
  });

  it('builds a tokenizer whose merges follow the scores (run.c: best-scoring pair first)', async () => {
    const t = writeTiny(path.join(root, 'tok-src'));
    const out = path.join(root, 'tok-out');
    await convertLlama2c(t.bin, t.tok, out);
    const tk = loadTokenizer(out);
    const id = (piece: string) => t.pieces.indexOf(piece);
    expect(tk.bosTokenId).toBe(1);
    expect(tk.eosTokenId).toBe(2);
    expect(tk.encode('the cat')).toEqual([1, id(' the'), id(' cat')]);
    expect(tk.encode('hat', { addSpecialTokens: false })).toEqual([id(' '), id('h'), id('at')]);
    // "é" is a vocabulary entry; "ü" is not and falls back to its UTF-8 bytes (byte b has id b + 3)
    expect(tk.encode('é ü', { addSpecialTokens: false })).toEqual([id(' '), id('é'), id(' '), 0xc3 + 3, 0xbc + 3]);
    expect(tk.decode(tk.encode('é ü tea'), { skipSpecialTokens: true })).toBe('é ü tea');
  });
});

describe('convertLlama2c bad inputs', () => {
  it('names a missing checkpoint or tokenizer', async () => {
    const t = writeTiny(path.join(root, 'bad-missing'));
    const nope = path.join(root, 'nope.bin');
    await expectUserError(convertLlama2c(nope, t.tok, path.join(root, 'o1')), nope, /missing/);
    await expectUserError(convertLlama2c(t.bin, nope, path.join(root, 'o1')), nope, /missing/);
    expect(existsSync(path.join(root, 'o1'))).toBe(false);
  });

  it('rejects a truncated checkpoint, a wrong classifier sign and a short header', async () => {
    const t = writeTiny(path.join(root, 'bad-ck'));
    const full = readFileSync(t.bin);
    const cut = path.join(root, 'bad-ck', 'cut.bin');
    writeFileSync(cut, full.subarray(0, full.length - 4));
    await expectUserError(convertLlama2c(cut, t.tok, path.join(root, 'o2')), cut, /is \d+ bytes but its header .* implies \d+ bytes \(truncated\?\)/);
    const sign = path.join(root, 'bad-ck', 'sign.bin');
    const flipped = Buffer.from(full);
    flipped.writeInt32LE(-flipped.readInt32LE(20), 20);
    writeFileSync(sign, flipped);
    await expectUserError(convertLlama2c(sign, t.tok, path.join(root, 'o2')), sign, /separate classifier .*sign of vocab_size is wrong/);
    const tiny = path.join(root, 'bad-ck', 'tiny.bin');
    writeFileSync(tiny, full.subarray(0, 10));
    await expectUserError(convertLlama2c(tiny, t.tok, path.join(root, 'o2')), tiny, /truncated: 10 bytes/);
    const zero = path.join(root, 'bad-ck', 'zero.bin');
    const z = Buffer.from(full);
    z.writeInt32LE(0, 12); // n_heads 0
    writeFileSync(zero, z);
    await expectUserError(convertLlama2c(zero, t.tok, path.join(root, 'o2')), zero, /not a llama2\.c checkpoint: .*n_heads 0/);
    const v1 = path.join(root, 'bad-ck', 'v1.bin');
    const magic = Buffer.from(full);
    magic.writeUInt32LE(0x616b3432, 0);
    magic.writeInt32LE(1, 4);
    writeFileSync(v1, magic);
    await expectUserError(convertLlama2c(v1, t.tok, path.join(root, 'o2')), v1, /version-1 export/);
    expect(existsSync(path.join(root, 'o2'))).toBe(false);
  });

  it('rejects a truncated tokenizer, one with extra tokens, and one that is not a llama2.c export', async () => {
    const t = writeTiny(path.join(root, 'bad-tok'));
    const good = readFileSync(t.tok);
    const cut = path.join(root, 'bad-tok', 'cut.bin');
    writeFileSync(cut, good.subarray(0, good.length - 1));
    await expectUserError(convertLlama2c(t.bin, cut, path.join(root, 'o3')), cut, /truncated: ends inside token \d+ of \d+/);
    const extra = path.join(root, 'bad-tok', 'extra.bin');
    writeFileSync(extra, Buffer.concat([good, tokenizerBytes(['x'], [0]).subarray(4)]));
    await expectUserError(convertLlama2c(t.bin, extra, path.join(root, 'o3')), extra, /has 9 bytes after token \d+; the checkpoint's vocab_size is \d+/);
    const specials = path.join(root, 'bad-tok', 'specials.bin');
    const { pieces, scores } = tinyVocab();
    writeFileSync(specials, tokenizerBytes(['<unk>', '<s>', ...pieces.slice(2)], scores));
    await expectUserError(convertLlama2c(t.bin, specials, path.join(root, 'o3')), specials, /token 1 is "<s>", expected "\\n<s>\\n"/);
    const dup = path.join(root, 'bad-tok', 'dup.bin');
    writeFileSync(dup, tokenizerBytes([...pieces.slice(0, -1), 'he'], scores));
    await expectUserError(convertLlama2c(t.bin, dup, path.join(root, 'o3')), dup, /tokens \d+ and \d+ are both "he"/);
    const empty = path.join(root, 'bad-tok', 'empty.bin');
    writeFileSync(empty, Buffer.alloc(2));
    await expectUserError(convertLlama2c(t.bin, empty, path.join(root, 'o3')), empty, /truncated: 2 bytes/);
    expect(existsSync(path.join(root, 'o3'))).toBe(false);
  });
});

describe('stories260K against llama2.c run.c', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(root, 'stories260K');
    await convertLlama2c(stories.bin, stories.tok, dir);
  });

  it('tokenizes exactly as run.c (prompt ids, byte fallback) and decodes back to the text', () => {
    const tk = loadTokenizer(dir);
    expect(golden.tokenization.cases.length).toBeGreaterThan(5);
    for (const c of golden.tokenization.cases) {
      const ids = tk.encode(c.text, { addSpecialTokens: true });
      expect(ids, c.text).toEqual(c.ids);
      expect(tk.decode(ids, { skipSpecialTokens: true })).toBe(c.text);
    }
    expect(golden.tokenization.cases.some((c) => c.ids.some((id) => id >= 3 && id < 259))).toBe(true); // some byte fallback covered
  });

  it('generates greedily through the ONNX step graph exactly what run.c generates', async () => {
    const model = openModel(dir);
    const files = ensureGraphs(model, { dtype: 'float32', kinds: ['step'], cacheDir: path.join(root, 'cache') });
    const session = await createSession(files.paths.step!, { device: 'cpu', threads: 1 });
    try {
      const promptIds = model.tokenizer!.encode(golden.prompt, { addSpecialTokens: true });
      expect(promptIds).toEqual(golden.ids.slice(0, golden.promptTokens + 1));
      // run.c's -n counts every fed position after BOS, the prompt's included
      const maxNewTokens = golden.steps - golden.promptTokens;
      const generated = await generateGreedy(session, model.spec, 'float32', promptIds, { maxNewTokens, stopIds: [1, 2] });
      // run.c stops at BOS without printing it (and does not stop at EOS; the golden has neither)
      const continuation = generated.at(-1) === 1 ? generated.slice(0, -1) : generated;
      expect([...promptIds, ...continuation]).toEqual(golden.ids);
      const text = model.tokenizer!.decode([...promptIds, ...continuation], { skipSpecialTokens: true });
      expect(text).toBe(golden.text);
      expect(text.slice(golden.prompt.length)).toBe(golden.text.slice(golden.prompt.length));
    } finally {
      await session.release();
    }
  });
});
