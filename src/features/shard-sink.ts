// Writes shards in the background while the caller computes the next contexts: a small pool of
// worker threads, each writing (converting, hashing, fsyncing) one shard, so a fast GPU is not
// held back by one core's sha256 or one file's fsync. A job with `record` puts its shard in the
// manifest itself the moment the shard is on disk (the main thread may be blocked in a run);
// the caller's callbacks run strictly in submission order. Host memory is bounded: a submission
// waits while the shards in flight already hold `maxBytesInFlight` (one shard is always allowed). Falls back to writing in-process when no
// compiled worker is available (running from TypeScript sources).
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { runShardJob, type ShardJob } from './shard-job.js';
import type { ShardInfo } from './types.js';
import { request, buffersOf } from '../util/worker-request.js';

const WORKER = new URL('./shard-worker.js', import.meta.url);

export interface ShardSinkOptions {
  /** false: write in-process, in series (tests, or no compiled worker) */
  background?: boolean;
  /** shards written at the same time (default: 3, fewer on small hosts) */
  workers?: number;
  /** bytes of features the shards in flight may hold (default: a quarter of the host's RAM) */
  maxBytesInFlight?: number;
}

/** Called in submission order once a shard is complete on disk (and recorded, with `record`); `seconds` = its write time. */
export type OnShardWritten = (info: ShardInfo, seconds: number) => Promise<void>;

/**
 * The caller's attention-input arrays are views over buffers it owns whole: they travel to the writer
 * without a copy and come back through `recycle` once the shard is written.
 */
export interface Recycling {
  recycle: (buffers: ArrayBuffer[]) => void;
}

interface Slot {
  worker: Worker;
  busy: boolean;
}

export function defaultShardWriters(): number {
  return Math.max(1, Math.min(3, Math.floor(os.cpus().length / 4)));
}

export class ShardSink {
  private readonly background: boolean;
  private readonly maxWorkers: number;
  private readonly maxBytes: number;
  private readonly slots: Slot[] = [];
  private inflight: { done: Promise<void>; bytes: number }[] = [];
  private tail: Promise<void> = Promise.resolve();

  constructor(opts: ShardSinkOptions = {}) {
    this.background = (opts.background ?? true) && existsSync(fileURLToPath(WORKER));
    this.maxWorkers = Math.max(1, opts.workers ?? defaultShardWriters());
    this.maxBytes = opts.maxBytesInFlight ?? os.totalmem() / 4;
  }

  /** Waits until the job may start (worker free, memory budget), then starts it. */
  async submit(job: ShardJob, onDone: OnShardWritten, recycling?: Recycling): Promise<void> {
    const bytes = [...job.attnInput, ...(job.attnScales ?? []), ...job.scores].reduce((a, x) => a + x.byteLength, 0);
    while (this.inflight.length > 0 && (this.inflight.length >= this.maxWorkers || this.bytesInFlight() + bytes > this.maxBytes)) {
      await this.inflight.shift()!.done;
    }
    if (!this.background) {
      const t = process.hrtime.bigint();
      const info = await runShardJob(job);
      recycling?.recycle([...job.attnInput, ...(job.attnScales ?? [])].map((h) => h.buffer as ArrayBuffer));
      await onDone(info, Number(process.hrtime.bigint() - t) / 1e9);
      return;
    }
    const written = this.inWorker(this.freeSlot(), job, recycling);
    // A failure stops every later shard's callback (the chain rejects from there on); shards that
    // their writers finished and recorded stay recorded.
    const recorded = Promise.all([this.tail, written]).then(([, r]) => onDone(r.info, r.seconds));
    recorded.catch(() => undefined); // awaited by submit/drain; no unhandled-rejection noise meanwhile
    this.tail = recorded;
    this.inflight.push({ done: recorded, bytes });
  }

  /** Waits until every submitted shard is written and recorded; rethrows a failure. */
  async drain(): Promise<void> {
    while (this.inflight.length) await this.inflight.shift()!.done;
  }

  async close(): Promise<void> {
    try {
      await this.drain();
    } finally {
      await Promise.all(this.slots.map((s) => s.worker.terminate()));
      this.slots.length = 0;
    }
  }

  private bytesInFlight(): number {
    return this.inflight.reduce((a, x) => a + x.bytes, 0);
  }

  private freeSlot(): Slot {
    const idle = this.slots.find((s) => !s.busy);
    if (idle) return idle;
    const slot = { worker: new Worker(WORKER), busy: false };
    this.slots.push(slot);
    return slot;
  }

  private async inWorker(slot: Slot, job: ShardJob, recycling?: Recycling): Promise<{ info: ShardInfo; seconds: number }> {
    // Hand whole buffers over without copying (the caller must not touch them afterwards);
    // a view into a larger buffer (e.g. Node's pool) is copied first, so nothing else moves,
    // unless the caller owns the whole buffer (recycling): then the view travels as it is.
    const own = <T extends Uint16Array | Float32Array | Int8Array | Uint8Array>(a: T): T => (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : (a.slice() as T));
    const scales = job.attnScales && (recycling ? job.attnScales : job.attnScales.map(own));
    const sent: ShardJob = { ...job, attnInput: recycling ? job.attnInput : job.attnInput.map(own), ...(scales ? { attnScales: scales } : {}), scores: job.scores.map(own), returnAttnInput: !!recycling };
    slot.busy = true;
    const m = await request<{ ok: boolean; info?: ShardInfo; seconds?: number; error?: string; buffers?: ArrayBuffer[] }>(slot.worker, sent, buffersOf([...sent.attnInput, ...(sent.attnScales ?? []), ...sent.scores]));
    slot.busy = false;
    if (m.buffers && recycling) recycling.recycle(m.buffers);
    if (!m.ok) throw new Error(m.error);
    return { info: m.info!, seconds: m.seconds! };
  }
}
