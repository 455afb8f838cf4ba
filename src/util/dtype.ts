// Floating-point element types by their PyTorch names: what the gate tensor schema stores and
// what the torch-file library writes and reads.
export type TensorDtype = 'float32' | 'float16' | 'bfloat16' | 'float64';
