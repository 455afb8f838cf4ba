// The protocol-2 pickle writer against our VM and against Python's own pickle module.
import { afterAll, describe, expect, it } from 'vitest';
import { pickle, py, type PyValue } from '../../../src/export/torch-file/pickle-writer.js';
import { unpickle, type PyCallable } from '../../../src/export/torch-file/pickle-reader.js';
import { runPython, tempDir, torchPython } from '../helpers.js';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';

const { dir, cleanup } = tempDir('pickle');
afterAll(cleanup);

const sample: PyValue = py.dict([
  ['ints', py.list([py.int(0), py.int(255), py.int(256), py.int(65535), py.int(65536), py.int(-1), py.int(2 ** 31 - 1), py.int(-(2 ** 31)), py.int(2 ** 31), py.int(-(2 ** 40)), py.int(2n ** 70n), py.int(-(2n ** 64n))])],
  ['floats', py.list([py.float(0.1), py.float(-2.5e-300), py.float(1 / 3)])],
  ['text', py.tuple('', 'héllo ✓', 'line\nbreak')],
  ['consts', py.tuple(null, true, false)],
  ['bytes', py.bytes(Uint8Array.from([0, 1, 127, 128, 255]))],
  ['nested', py.tuple(py.tuple(), py.tuple(py.int(1)), py.tuple(py.int(1), py.int(2), py.int(3), py.int(4)), py.list([]))],
  ['ordered', py.call(py.global('collections', 'OrderedDict'), [], { dictItems: [['b', py.int(1)], ['a', py.int(2)]] })],
]);

const globals = new Map<string, PyCallable>([
  ['collections.OrderedDict', { pyName: 'collections.OrderedDict', call: () => new Map() }],
  ['_codecs.encode', { pyName: '_codecs.encode', call: (a) => Uint8Array.from(Buffer.from(a[0] as string, 'latin1')) }],
]);

describe('pickle writer', () => {
  it('round-trips through the pickle VM', () => {
    const v = unpickle(pickle(sample), { globals }) as Map<string, unknown>;
    expect([...v.keys()]).toEqual(['ints', 'floats', 'text', 'consts', 'bytes', 'nested', 'ordered']);
    expect(v.get('ints')).toEqual([0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 40), 2n ** 70n, -(2n ** 64n)]);
    expect(v.get('floats')).toEqual([0.1, -2.5e-300, 1 / 3]);
    expect(v.get('text')).toEqual(['', 'héllo ✓', 'line\nbreak']);
    expect(v.get('consts')).toEqual([null, true, false]);
    expect(v.get('bytes')).toEqual(Uint8Array.from([0, 1, 127, 128, 255]));
    expect(v.get('nested')).toEqual([[], [1], [1, 2, 3, 4], []]);
    expect([...(v.get('ordered') as Map<string, unknown>).entries()]).toEqual([
      ['b', 1],
      ['a', 2],
    ]);
  });

  it('is deterministic and memoizes repeated globals', () => {
    const twice = py.list([py.call(py.global('m', 'f'), []), py.call(py.global('m', 'f'), [])]);
    const bytes = pickle(twice);
    expect(bytes.equals(pickle(twice))).toBe(true);
    expect(bytes.toString('latin1').split('m\nf\n').length).toBe(2); // GLOBAL text appears once
  });

  it('refuses unknown globals and malformed programs in the VM', () => {
    expect(() => unpickle(pickle(py.call(py.global('os', 'system'), ['echo hi'])), { globals })).toThrow('unsupported Python global os.system');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0x5d]), { globals })).toThrow('truncated pickle');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0xff]), { globals })).toThrow(/unsupported pickle opcode 0xff/);
  });

  it("stops at the caller's bounds and names what the caller expected", () => {
    const nones = Uint8Array.from([0x80, 0x02, ...Array(20).fill(0x4e), 0x2e]); // 20 x NONE, STOP
    expect(() => unpickle(nones, { globals, maxStack: 10, expected: 'a small thing' })).toThrow('pickle stack grows beyond 10 items; not a small thing');
    expect(() => unpickle(nones, { globals, maxStack: 10 })).toThrow(/beyond 10 items$/);
    expect(unpickle(nones, { globals })).toBe(null); // the default bounds are far above 20
  });

  it.skipIf(!torchPython.ok)(`is read by Python's pickle module the same way (${torchPython.reason})`, () => {
    const file = path.join(dir, 'sample.pkl');
    writeFileSync(file, pickle(sample));
    const script = [
      'import json, pickle, sys, collections',
      'v = pickle.load(open(sys.argv[1], "rb"))',
      'assert type(v["ordered"]) is collections.OrderedDict',
      'v["ordered"] = list(v["ordered"].items())',
      'v["bytes"] = list(v["bytes"])',
      'v["ints"] = [str(i) for i in v["ints"]]',
      'v["floats"] = [repr(f) for f in v["floats"]]',
      'print(json.dumps(v))',
    ].join('\n');
    const v = runPython(dir, 'read.py', script, [file]);
    expect(v.ints).toEqual(['0', '255', '256', '65535', '65536', '-1', '2147483647', '-2147483648', '2147483648', '-1099511627776', String(2n ** 70n), String(-(2n ** 64n))]);
    expect(v.floats).toEqual(['0.1', '-2.5e-300', '0.3333333333333333']);
    expect(v.text).toEqual(['', 'héllo ✓', 'line\nbreak']);
    expect(v.consts).toEqual([null, true, false]);
    expect(v.bytes).toEqual([0, 1, 127, 128, 255]);
    expect(v.nested).toEqual([[], [1], [1, 2, 3, 4], []]);
    expect(v.ordered).toEqual([
      ['b', 1],
      ['a', 2],
    ]);
  });
});
