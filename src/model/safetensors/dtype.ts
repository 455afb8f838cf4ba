// safetensors element types: their names in the format, mapped onto our one dtype name each
// (sizes from util/dtype.ts; sub-byte types such as F4 are not supported).
import { DTYPE_BYTES, type Dtype } from '../../util/dtype.js';

export const SAFETENSORS_DTYPES = {
  BOOL: 'bool',
  U8: 'uint8',
  I8: 'int8',
  F8_E5M2: 'float8e5m2',
  F8_E4M3: 'float8e4m3',
  F8_E8M0: 'float8e8m0',
  I16: 'int16',
  U16: 'uint16',
  F16: 'float16',
  BF16: 'bfloat16',
  I32: 'int32',
  U32: 'uint32',
  F32: 'float32',
  F64: 'float64',
  I64: 'int64',
  U64: 'uint64',
} as const satisfies Record<string, Dtype>;

export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

export function isSafetensorsDType(v: unknown): v is SafetensorsDType {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPES, v);
}

/** Bytes per element of a safetensors dtype. */
export function safetensorsBytes(dtype: SafetensorsDType): number {
  return DTYPE_BYTES[SAFETENSORS_DTYPES[dtype]];
}

/** Number of elements of a shape (1 for a scalar). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
