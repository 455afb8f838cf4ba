// Which values of a graph ONNX Runtime's CUDA execution provider must copy from the device to
// the host before a kernel can run: Slice bounds, Pad amounts, Reshape/Expand shapes, Range
// limits, GroupQueryAttention's total length are read on the host. A bound computed by a CUDA
// node costs a MemcpyToHost that waits for every kernel queued before it (≈ 2,900 per Qwen3-8B
// context in session 4's profile). Bounds computed from Shape outputs, small initializers and the
// graph's own inputs stay on the CPU. This mirrors ONNX Runtime 1.29's placement rule
// (core/framework/fallback_cpu_capability.cc, GetCpuPreferredNodes) on the .onnx alone, so the
// count can be checked without a GPU; the GPU profile's MemcpyToHost count is the real figure.
import type onnxProto from 'onnx-proto';

type GraphProto = onnxProto.onnx.IGraphProto;
type NodeProto = onnxProto.onnx.INodeProto;

/** Inputs the CUDA kernels of these ops read in host memory (KernelDefBuilder InputMemoryType CPU). */
const HOST_INPUTS: Record<string, number[]> = {
  Slice: [1, 2, 3, 4],
  Reshape: [1],
  Expand: [1],
  Unsqueeze: [1],
  Squeeze: [1],
  ConstantOfShape: [0],
  Range: [0, 1, 2],
  Pad: [1, 2, 3],
  Tile: [1],
  ReduceMax: [1],
  ReduceMin: [1],
  ReduceSum: [1],
  ReduceMean: [1],
  TopK: [1],
  Split: [1],
  Loop: [0, 1],
  'com.microsoft:GroupQueryAttention': [6],
};
/** Ops whose CUDA kernels write their output in host memory. */
const HOST_OUTPUT_OPS = new Set(['Shape', 'Size']);
/** Ops without a CUDA kernel in our graphs (they run on the CPU EP; their inputs are copied to the host on purpose). */
const CPU_ONLY_OPS = new Set(['BitwiseAnd', 'BitCast']);
/** fallback_cpu_capability.cc's kSmallInitializerThreshold */
const SMALL_INITIALIZER = 100;

export interface HostReadReport {
  /** graph name (the main graph, or a Loop body's name) */
  graph: string;
  /** nodes the placement rule keeps on the CPU (int64 bound arithmetic) */
  cpuNodes: number;
  /** host-read inputs (slots) fed by anything but an initializer */
  dynamicHostInputs: number;
  /** distinct device-computed values read on the host: one MemcpyToHost each, per execution of the graph */
  deviceToHost: number;
  /** the op types reading them, with counts */
  readers: Record<string, number>;
  /** distinct device values a CPU-only op reads (the intended attention-input copies) */
  dataToHost: number;
  /**
   * distinct host values (not initializers) a CUDA node reads in device memory: small MemcpyFromHost
   * copies, which the driver queues without waiting for the device (≤ 64 KB from pageable memory)
   */
  hostToDevice: number;
}

interface Scope {
  initializers: Map<string, number>; // name -> element count
  /** values of enclosing graphs that live in host memory */
  hostValues: Set<string>;
}

function opKey(n: NodeProto): string {
  return n.domain ? `${n.domain}:${n.opType}` : n.opType!;
}

/** Host reads of `graph` and of every Loop body in it (depth first), under ORT's CUDA placement rule. */
export function hostReads(graph: GraphProto, parent?: Scope): HostReadReport[] {
  const initializers = new Map(parent?.initializers);
  for (const t of graph.initializer ?? []) initializers.set(t.name!, (t.dims ?? []).reduce((a: number, b) => a * Number(b), 1));
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name!));
  const isSmallConst = (v: string) => (initializers.get(v) ?? Infinity) <= SMALL_INITIALIZER;
  // constant folding (ORT level 1, before partitioning): nodes fed only by initializers become initializers
  const folded = new Set<string>();
  const isConst = (v: string) => initializers.has(v) || folded.has(v);
  const hostOut = new Set<string>(); // CPU tensors produced in this graph
  let cpuNodes = 0;
  const placement = new Map<NodeProto, 'cpu' | 'cuda' | 'cpu-only'>();
  for (const n of graph.node ?? []) {
    const inputs = (n.input ?? []).filter((x) => x);
    const hasSubgraph = (n.attribute ?? []).some((a) => a.g);
    if (!hasSubgraph && inputs.length > 0 && inputs.every(isConst) && !CPU_ONLY_OPS.has(n.opType!)) {
      (n.output ?? []).forEach((o) => folded.add(o));
      placement.set(n, 'cpu');
      continue;
    }
    if (CPU_ONLY_OPS.has(n.opType!)) {
      placement.set(n, 'cpu-only');
      (n.output ?? []).forEach((o) => hostOut.add(o));
      continue;
    }
    if (HOST_OUTPUT_OPS.has(n.opType!)) {
      placement.set(n, 'cuda');
      (n.output ?? []).forEach((o) => hostOut.add(o));
      continue;
    }
    // a candidate consumes a host tensor; it moves to the CPU when every input is a small
    // initializer, a graph input, or a host tensor the CUDA kernel would not read on the host anyway
    const slots = HOST_INPUTS[opKey(n)] ?? [];
    const candidate = !hasSubgraph && inputs.some((x) => hostOut.has(x));
    const onCpu =
      candidate &&
      (n.input ?? []).every((x, i) => !x || isSmallConst(x) || folded.has(x) || graphInputs.has(x) || (hostOut.has(x) && !slots.includes(i)));
    if (onCpu) {
      cpuNodes++;
      placement.set(n, 'cpu');
      (n.output ?? []).forEach((o) => hostOut.add(o));
    } else placement.set(n, 'cuda');
  }
  // where a value lives: host for initializers, folded constants, host outputs, graph inputs of the main
  // graph (fed from host memory), a Loop body's iteration count and condition, and host values of enclosing graphs
  const loopHost = parent ? new Set((graph.input ?? []).slice(0, 2).map((v) => v.name!)) : graphInputs;
  const onHost = (v: string) => isConst(v) || hostOut.has(v) || loopHost.has(v) || !!parent?.hostValues.has(v);
  const readers: Record<string, number> = {};
  const deviceToHost = new Set<string>();
  const dataToHost = new Set<string>();
  const hostToDevice = new Set<string>();
  let dynamicHostInputs = 0;
  for (const n of graph.node ?? []) {
    const where = placement.get(n)!;
    if (where === 'cpu-only') {
      (n.input ?? []).forEach((x) => x && !onHost(x) && dataToHost.add(x));
      continue;
    }
    if (where !== 'cuda') continue;
    const slots = HOST_INPUTS[opKey(n)] ?? [];
    (n.input ?? []).forEach((x, i) => x && !slots.includes(i) && !isConst(x) && onHost(x) && !(n.attribute ?? []).some((a) => a.g) && hostToDevice.add(x));
    for (const i of slots) {
      const x = n.input?.[i];
      if (!x || isConst(x)) continue;
      dynamicHostInputs++;
      if (onHost(x)) continue;
      if (!deviceToHost.has(x)) readers[n.opType!] = (readers[n.opType!] ?? 0) + 1;
      deviceToHost.add(x);
    }
  }
  const report: HostReadReport = { graph: graph.name ?? '', cpuNodes, dynamicHostInputs, deviceToHost: deviceToHost.size, readers, dataToHost: dataToHost.size, hostToDevice: hostToDevice.size };
  const scope: Scope = { initializers, hostValues: new Set([...(parent?.hostValues ?? []), ...hostOut, ...folded, ...(parent ? [] : graphInputs)]) };
  const bodies = (graph.node ?? []).flatMap((n) => (n.attribute ?? []).filter((a) => a.g).map((a) => a.g!));
  return [report, ...bodies.flatMap((b) => hostReads(b, scope))];
}
