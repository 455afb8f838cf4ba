// Runs the KVzip graph on one context at a time, either in-process or in a worker thread that
// owns its own ONNX Runtime session. onnxruntime-node's run blocks the thread that calls it and
// returns CUDA outputs to host memory, so with one session the device idles while a context's
// attention inputs are copied out. Two worker runners let one context's copies overlap the next
// context's device work, at the price of a second copy of the weights on the device.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { createSession, type DeviceOptions } from '../runtime/session.js';
import { scoreContext, type ContextScores } from './score-context.js';
import type { KvzipFeeds } from './inputs.js';
import { targetArrays, type AttnInputTarget } from './attn-input-buffers.js';
import { UserError } from '../util/errors.js';
import { request, buffersOf } from '../util/worker-request.js';

export interface RunResult extends ContextScores {
  /** seconds inside ONNX Runtime's run (device work and output copies) */
  runSeconds: number;
}

export interface ContextRunner {
  /** `into`'s buffers travel to the runner and come back as `attnInput` (do not touch them meanwhile) */
  run(feeds: KvzipFeeds, into?: AttnInputTarget): Promise<RunResult>;
  release(): Promise<void>;
}

export interface RunnerSpec {
  modelPath: string;
  device: DeviceOptions;
  numScored: number;
  numKvHeads: number;
}

const WORKER = new URL('./runner-worker.js', import.meta.url);

/** Worker runners need the compiled worker (dist/); from TypeScript sources use in-process runners. */
export function workerRunnersAvailable(): boolean {
  return existsSync(fileURLToPath(WORKER));
}

export async function inProcessRunner(spec: RunnerSpec): Promise<ContextRunner> {
  const session = await createSession(spec.modelPath, spec.device);
  return {
    async run(feeds, into) {
      const t = process.hrtime.bigint();
      const res = await scoreContext(session, feeds, spec.numScored, spec.numKvHeads, into);
      return { ...res, runSeconds: Number(process.hrtime.bigint() - t) / 1e9 };
    },
    release: () => session.release(),
  };
}

type Reply = { ok: true; res?: RunResult } | { ok: false; error: string; userError?: boolean };

export async function workerRunner(spec: RunnerSpec): Promise<ContextRunner> {
  const worker = new Worker(WORKER);
  let busy: Promise<unknown> = Promise.resolve();
  const call = async (msg: unknown, transfer: ArrayBuffer[] = []) => {
    const m = await request<Reply>(worker, msg, transfer);
    if (!m.ok) throw m.userError ? new UserError(m.error) : new Error(m.error);
    return m;
  };
  await call({ kind: 'init', spec });
  return {
    run(feeds, into) {
      const p = busy.then(() => call({ kind: 'run', feeds, into }, into ? buffersOf(targetArrays(into)) : [])).then((r) => (r as { res: RunResult }).res);
      busy = p.catch(() => undefined);
      return p;
    },
    async release() {
      await busy;
      await call({ kind: 'release' }).catch(() => undefined);
      await worker.terminate();
    },
  };
}
