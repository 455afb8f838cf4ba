// Tiny graphs for a KV cache kept in device memory (WebGPU, runtime/compressed-cache.ts):
// "gather" keeps one head's held slots (key and value [1, 1, n, d], keep [k] int32 ->
// key_kept, value_kept [1, 1, k, d]) on the device; "download" copies one head's buffers to the host.
import { Graph, encodeModel, type DType } from './builder.js';

export function headGatherModel(dtype: DType, headDim: number): Uint8Array {
  const g = new Graph('fastkvzip_head_gather');
  const keep = g.input('keep', 'int32', ['kept']);
  for (const n of ['key', 'value']) {
    const x = g.input(n, dtype, [1, 1, 'slots', headDim]);
    g.output(g.op('Gather', [x, keep], { axis: 2 }), `${n}_kept`, dtype, [1, 1, 'kept', headDim]);
  }
  return encodeModel(g);
}

export function headDownloadModel(dtype: DType, headDim: number): Uint8Array {
  const g = new Graph('fastkvzip_head_download');
  for (const n of ['key', 'value']) g.output(g.op('Identity', [g.input(n, dtype, [1, 1, 'slots', headDim])]), `${n}_host`, dtype, [1, 1, 'slots', headDim]);
  return encodeModel(g);
}
