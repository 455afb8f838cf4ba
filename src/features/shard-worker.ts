// Worker-thread entry: runs ShardJobs posted by ShardSink (src/features/shard-sink.ts).
import { parentPort } from 'node:worker_threads';
import { runShardJob, type ShardJob } from './shard-job.js';

parentPort!.on('message', async (job: ShardJob) => {
  try {
    parentPort!.postMessage({ ok: true, info: await runShardJob(job) });
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: (e as Error).message });
  }
});
