import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openSafetensors, readSafetensorsHeader, writeSafetensors } from '../../src/model/safetensors/index.js';
import { f32ToBf16Bits, f32ToF16Bits } from '../../src/util/half.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fkz-st-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A file laid out by hand exactly as the format description says. */
function handMadeFile(headerJson: string, data: Uint8Array): Uint8Array {
  const header = Buffer.from(headerJson, 'utf8');
  const out = Buffer.alloc(8 + header.length + data.length);
  out.writeBigUInt64LE(BigInt(header.length));
  header.copy(out, 8);
  Buffer.from(data).copy(out, 8 + header.length);
  return out;
}

describe('writeSafetensors', () => {
  it('writes the reference layout byte for byte (8-byte aligned header, space padding)', async () => {
    const file = path.join(dir, 'a.safetensors');
    await writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
    const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
    expect(padded.length % 8).toBe(0);
    const expected = handMadeFile(padded, new Uint8Array(new Float32Array([1, 2]).buffer));
    expect(Buffer.from(readFileSync(file)).equals(Buffer.from(expected))).toBe(true);
    expect(readdirSync(dir)).toEqual(['a.safetensors']); // no temp file left behind
  });

  it('round-trips dtypes, metadata, streamed chunks, and keeps data aligned', async () => {
    const file = path.join(dir, 'm.safetensors');
    const f32 = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 3);
    const bf16 = Uint16Array.from([1.5, -2, 0.25].map(f32ToBf16Bits));
    const f16 = Uint16Array.from([0.5, 65504, -1e-3].map(f32ToF16Bits));
    const i64 = new BigInt64Array([1n, -2n, 3n]);
    const u8 = new Uint8Array([1, 0, 1]);
    const streamed = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const streamedBytes = new Uint8Array(streamed.buffer);
    async function* pieces() {
      for (let i = 0; i < streamedBytes.length; i += 999) yield streamedBytes.slice(i, i + 999);
    }
    await writeSafetensors(
      file,
      [
        { name: 'mask', dtype: 'BOOL', shape: [3], data: u8 },
        { name: 'x.bf16', dtype: 'BF16', shape: [3], data: bf16 },
        { name: 'x.f32', dtype: 'F32', shape: [3, 4], data: f32 },
        { name: 'ids', dtype: 'I64', shape: [3], data: i64 },
        { name: 'x.f16', dtype: 'F16', shape: [1, 3], data: f16 },
        { name: 'big', dtype: 'F32', shape: [10, 100], data: pieces() },
        { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      ],
      { format: 'pt', note: 'hello' },
    );
    const st = openSafetensors(file);
    expect(st.metadata).toEqual({ format: 'pt', note: 'hello' });
    expect(new Set(st.names())).toEqual(new Set(['mask', 'x.bf16', 'x.f32', 'ids', 'x.f16', 'big', 'empty']));
    for (const name of st.names()) {
      const t = st.info(name);
      const elem = { BOOL: 1, BF16: 2, F16: 2, F32: 4, I64: 8 }[t.dtype as 'F32']!;
      expect(t.offset % elem, name).toBe(0);
    }
    expect(Array.from(st.readF32('x.f32'))).toEqual(Array.from(f32));
    expect(Array.from(st.readF32('x.bf16'))).toEqual([1.5, -2, 0.25]);
    const h = st.readF32('x.f16');
    expect(h[0]).toBe(0.5);
    expect(h[1]).toBe(65504);
    expect(h[2]).toBeCloseTo(-1e-3, 5);
    expect(st.info('x.f16')).toMatchObject({ dtype: 'F16', shape: [1, 3], length: 6, file });
    expect(Array.from(new BigInt64Array((await st.readRaw('ids')).buffer))).toEqual([1n, -2n, 3n]);
    expect(Array.from(st.readRawSync('mask'))).toEqual([1, 0, 1]);
    expect(Array.from(st.readF32('big'))).toEqual(Array.from(streamed));
    expect(st.readF32('empty').length).toBe(0);
    expect(() => st.readF32('ids')).toThrow(/cannot convert I64/);

    // info().offset is an absolute file offset: the raw bytes sit there.
    const whole = readFileSync(file);
    const t = st.info('x.f32');
    expect(Buffer.from(whole.subarray(t.offset, t.offset + t.length)).equals(Buffer.from(f32.buffer))).toBe(true);

    // Partial reads and chunked streaming.
    const part = await st.readRange('big', 40, 8);
    expect(Array.from(new Float32Array(part.buffer))).toEqual([streamed[10], streamed[11]]);
    const got: number[] = [];
    let chunks = 0;
    for await (const c of st.chunks('big', 1024)) {
      chunks++;
      got.push(...new Float32Array(c.slice().buffer));
    }
    expect(chunks).toBe(4);
    expect(got).toEqual(Array.from(streamed));
    await expect(st.readRange('big', 3990, 20)).rejects.toThrow(/outside/);
    expect(() => st.info('nope')).toThrow(/m\.safetensors: no tensor "nope"/);
  });

  it('rejects data whose size does not match the shape, leaving no file', async () => {
    const file = path.join(dir, 'bad.safetensors');
    await expect(writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }])).rejects.toThrow(/needs 12/);
    async function* short() {
      yield new Uint8Array(4);
    }
    await expect(writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [3], data: short() }])).rejects.toThrow(/produced 4 bytes/);
    await expect(
      writeSafetensors(file, [
        { name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
        { name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      ]),
    ).rejects.toThrow(/duplicate/);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('reading bad files', () => {
  const write = (name: string, bytes: Uint8Array) => {
    const f = path.join(dir, name);
    writeFileSync(f, bytes);
    return f;
  };

  it('truncated file: names the file and the tensor', async () => {
    const file = path.join(dir, 't.safetensors');
    await writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [4], data: new Float32Array(4) },
      { name: 'b', dtype: 'F32', shape: [4], data: new Float32Array(4) },
    ]);
    truncateSync(file, statSync(file).size - 3);
    expect(() => openSafetensors(file)).toThrow(/t\.safetensors: truncated or corrupt: tensor "b" ends at data byte 32/);
    truncateSync(file, 5);
    expect(() => openSafetensors(file)).toThrow(/t\.safetensors: not a safetensors file: only 5 bytes/);
    truncateSync(file, 20);
    expect(() => openSafetensors(file)).toThrow(/t\.safetensors: truncated: header needs/);
  });

  it('bad JSON header, non-object header, absurd header length', () => {
    const f1 = write('j.safetensors', handMadeFile('{"a": {"dtype": "F32",', new Uint8Array(0)));
    expect(() => openSafetensors(f1)).toThrow(/j\.safetensors: bad safetensors header: not valid JSON/);
    const f2 = write('k.safetensors', handMadeFile('[1, 2]  ', new Uint8Array(0)));
    expect(() => openSafetensors(f2)).toThrow(/k\.safetensors: bad safetensors header: not a JSON object/);
    const big = Buffer.alloc(16);
    big.writeBigUInt64LE(1n << 40n);
    const f3 = write('l.safetensors', big);
    expect(() => readSafetensorsHeader(f3)).toThrow(/l\.safetensors: not a safetensors file: header length \d+ is implausible/);
    const f4 = write('m.safetensors', handMadeFile('\xff\xfe', new Uint8Array(0)));
    expect(() => openSafetensors(f4)).toThrow(/m\.safetensors/);
  });

  it('offsets out of range, overlapping, inconsistent with shape; unknown dtype', () => {
    const data = new Uint8Array(16);
    const oob = write('o.safetensors', handMadeFile('{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}', data));
    expect(() => openSafetensors(oob)).toThrow(/o\.safetensors: truncated or corrupt: tensor "a" ends at data byte 32 but the file has only 16/);
    const neg = write('n.safetensors', handMadeFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}', data));
    expect(() => openSafetensors(neg)).toThrow(/n\.safetensors: tensor "a": bad data_offsets/);
    const span = write('s.safetensors', handMadeFile('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', data));
    expect(() => openSafetensors(span)).toThrow(/s\.safetensors: tensor "a": data_offsets span 8 bytes but F32\[3\] needs 12/);
    const overlap = write(
      'v.safetensors',
      handMadeFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', data),
    );
    expect(() => openSafetensors(overlap)).toThrow(/v\.safetensors: corrupt header: tensors "a" and "b" overlap/);
    const dt = write('d.safetensors', handMadeFile('{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}', data));
    expect(() => openSafetensors(dt)).toThrow(/d\.safetensors: tensor "a": unknown dtype "Q4"/);
    const meta = write('e.safetensors', handMadeFile('{"__metadata__":{"n":1}}', data));
    expect(() => openSafetensors(meta)).toThrow(/e\.safetensors: bad safetensors header: __metadata__\.n is not a string/);
  });
});

describe('sharded checkpoints', () => {
  async function sharded() {
    await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [
      { name: 'w1', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
    ]);
    await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [
      { name: 'w2', dtype: 'BF16', shape: [2], data: Uint16Array.from([3, 4].map(f32ToBf16Bits)) },
    ]);
    writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 12 },
        weight_map: { w1: 'model-00001-of-00002.safetensors', w2: 'model-00002-of-00002.safetensors' },
      }),
    );
  }

  it('opens a folder with an index and reads across shards', async () => {
    await sharded();
    const st = openSafetensors(dir);
    expect(st.source).toBe(path.join(dir, 'model.safetensors.index.json'));
    expect(st.files.length).toBe(2);
    expect(st.metadata).toEqual({ total_size: '12' });
    expect(Array.from(st.readF32('w1'))).toEqual([1, 2]);
    expect(Array.from(st.readF32('w2'))).toEqual([3, 4]);
    expect(st.info('w2').file).toBe(path.join(dir, 'model-00002-of-00002.safetensors'));
  });

  it('missing shard names the shard; a tensor absent from its shard names the shard', async () => {
    await sharded();
    rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expect(() => openSafetensors(dir)).toThrow(/model-00002-of-00002\.safetensors: missing \(listed as a shard in model\.safetensors\.index\.json\)/);
    await sharded();
    writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { w1: 'model-00001-of-00002.safetensors', w9: 'model-00002-of-00002.safetensors' } }),
    );
    expect(() => openSafetensors(dir)).toThrow(/model-00002-of-00002\.safetensors: has no tensor "w9"/);
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    expect(() => openSafetensors(dir)).toThrow(/model\.safetensors\.index\.json: not valid JSON/);
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w1: '../x.safetensors' } }));
    expect(() => openSafetensors(dir)).toThrow(/is not a file name inside the folder/);
  });

  it('a folder without weights says so', () => {
    expect(() => openSafetensors(dir)).toThrow(/no weights: neither model\.safetensors nor model\.safetensors\.index\.json/);
    expect(() => openSafetensors(path.join(dir, 'nothing.safetensors'))).toThrow(/nothing\.safetensors: missing/);
  });
});
