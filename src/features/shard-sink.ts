// Writes shards one at a time in the background while the caller computes the next context:
// at most one shard in flight, so host memory holds at most two contexts' features. Falls back
// to writing in-process when no compiled worker is available (running from TypeScript sources).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { runShardJob, type ShardJob } from './shard-job.js';
import type { ShardInfo } from './types.js';

const WORKER = new URL('./shard-worker.js', import.meta.url);

export class ShardSink {
  private worker: Worker | null;
  private inflight: Promise<ShardInfo> | null = null;

  constructor(opts: { background?: boolean } = {}) {
    const usable = (opts.background ?? true) && existsSync(fileURLToPath(WORKER));
    this.worker = usable ? new Worker(WORKER) : null;
  }

  /** Waits for the shard in flight (if any), then starts `job`; `onDone` runs in submission order. */
  async submit(job: ShardJob, onDone: (info: ShardInfo) => Promise<void>): Promise<void> {
    await this.drain();
    const run = this.worker ? this.inWorker(job) : runShardJob(job);
    this.inflight = run.then(async (info) => {
      await onDone(info);
      return info;
    });
    if (!this.worker) await this.inflight; // in-process: nothing to overlap with
  }

  /** Waits until every submitted shard is written and recorded; rethrows a failure. */
  async drain(): Promise<void> {
    const p = this.inflight;
    this.inflight = null;
    if (p) await p;
  }

  private inWorker(job: ShardJob): Promise<ShardInfo> {
    const w = this.worker!;
    return new Promise((resolve, reject) => {
      const onMessage = (m: { ok: boolean; info?: ShardInfo; error?: string }) => {
        w.off('error', onError);
        if (m.ok) resolve(m.info!);
        else reject(new Error(m.error));
      };
      const onError = (e: Error) => {
        w.off('message', onMessage);
        reject(e);
      };
      w.once('message', onMessage);
      w.once('error', onError);
      // Hand whole buffers over without copying (the caller must not touch them afterwards);
      // a view into a larger buffer (e.g. Node's pool) is copied first, so nothing else moves.
      const own = <T extends Uint16Array | Float32Array>(a: T): T => (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : (a.slice() as T));
      const sent: ShardJob = { ...job, hidden: job.hidden.map(own), scores: job.scores.map(own) };
      const transfer = [...sent.hidden, ...sent.scores].map((a) => a.buffer as ArrayBuffer).filter((b, i, all) => all.indexOf(b) === i);
      w.postMessage(sent, transfer);
    });
  }

  async close(): Promise<void> {
    try {
      await this.drain();
    } finally {
      await this.worker?.terminate();
      this.worker = null;
    }
  }
}
