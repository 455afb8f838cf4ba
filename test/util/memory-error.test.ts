// ONNX Runtime's out-of-memory failures become one line with the advice, exit 1, not "internal error".
import { describe, it, expect } from 'vitest';
import { memoryError, MEMORY_ADVICE } from '../../src/util/memory-error.js';

// the message the H100 gave for the Qwen3-8B KVzip graph at 100k tokens (session 7, recipe8b-extract.log)
const BFC = "Non-zero status code returned while running Loop node. Name:'n_Loop_6919' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:359 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) Failed to allocate memory for requested buffer of size 204875776";

describe('memoryError', () => {
  it('names the node and the failed request, and gives the advice (exit 1)', () => {
    const e = memoryError(new Error(BFC))!;
    expect(e).not.toBeNull();
    expect(e.exitCode).toBe(1);
    expect(e.message).toBe(`ONNX Runtime ran out of memory in its Loop node n_Loop_6919 (a request for 195.4 MiB failed); ${MEMORY_ADVICE}`);
    expect(e.message).not.toMatch(/\n/);
  });
  it('recognises CUDA and cuBLAS allocation failures', () => {
    expect(memoryError(new Error('CUDA failure 2: out of memory ; GPU=0 ; hostname=x'))?.message).toMatch(/^ONNX Runtime ran out of memory; /);
    expect(memoryError(new Error('CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED'))).not.toBeNull();
  });
  it('leaves every other error alone', () => {
    expect(memoryError(new Error('Non-zero status code returned while running Gather node: indices out of range'))).toBeNull();
    expect(memoryError('a string')).toBeNull();
  });
});
