// Element types, each by one name (PyTorch's spelling, which ONNX Runtime and numpy share), and
// their sizes: the one table. Formats that spell them their own way (safetensors' "BF16", ONNX's
// enum numbers) map their names onto these.
export type Dtype =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float8e4m3'
  | 'float8e5m2'
  | 'float8e8m0'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint64'
  | 'uint32'
  | 'uint16'
  | 'uint8'
  | 'bool';

/** Bytes per element. */
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float8e4m3: 1,
  float8e5m2: 1,
  float8e8m0: 1,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint64: 8,
  uint32: 4,
  uint16: 2,
  uint8: 1,
  bool: 1,
};

/** Floating-point element types of torch tensors: what the gate tensor schema stores and the torch-file library writes and reads. */
export type TensorDtype = Extract<Dtype, 'float32' | 'float16' | 'bfloat16' | 'float64'>;
