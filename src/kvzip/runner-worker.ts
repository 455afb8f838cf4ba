// Worker-thread entry of a context runner (src/kvzip/context-runner.ts): owns one in-process
// runner (an ONNX Runtime session) and runs the KVzip graph on the contexts it is sent.
import { parentPort } from 'node:worker_threads';
import { inProcessRunner, type ContextRunner, type RunnerSpec } from './context-runner.js';
import type { KvzipFeeds } from './inputs.js';
import { targetArrays, type AttnInputTarget } from './attn-input-buffers.js';
import { UserError } from '../util/errors.js';
import { buffersOf } from '../util/worker-request.js';

let runner: ContextRunner | null = null;

type Msg = { kind: 'init'; spec: RunnerSpec } | { kind: 'run'; feeds: KvzipFeeds; into?: AttnInputTarget } | { kind: 'release' };

parentPort!.on('message', async (m: Msg) => {
  try {
    if (m.kind === 'init') {
      runner = await inProcessRunner(m.spec);
      parentPort!.postMessage({ ok: true });
    } else if (m.kind === 'run') {
      const res = await runner!.run(m.feeds, m.into);
      // the attention-input arrays are the caller's buffers when given (ORT's own outputs are copied instead)
      parentPort!.postMessage({ ok: true, res }, buffersOf([...(m.into ? targetArrays({ arrays: res.attnInput, scales: res.attnScales }) : []), ...res.scores]));
    } else {
      await runner?.release();
      runner = null;
      parentPort!.postMessage({ ok: true });
    }
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: (e as Error).message, userError: e instanceof UserError });
  }
});
