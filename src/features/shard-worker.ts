// Worker-thread entry: runs ShardJobs posted by ShardSink (src/features/shard-sink.ts).
import { parentPort } from 'node:worker_threads';
import { runShardJob, type ShardJob } from './shard-job.js';
import { buffersOf } from '../util/worker-request.js';

parentPort!.on('message', async (job: ShardJob) => {
  const t = process.hrtime.bigint();
  try {
    const info = await runShardJob(job);
    const buffers = returned(job);
    parentPort!.postMessage({ ok: true, info, seconds: Number(process.hrtime.bigint() - t) / 1e9, buffers }, buffers);
  } catch (e) {
    const buffers = returned(job);
    parentPort!.postMessage({ ok: false, error: (e as Error).message, buffers }, buffers);
  }
});

function returned(job: ShardJob): ArrayBuffer[] {
  return job.returnAttnInput ? buffersOf([...job.attnInput, ...(job.attnScales ?? [])]) : [];
}
