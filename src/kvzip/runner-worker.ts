// Worker-thread entry of a context runner (src/kvzip/context-runner.ts): owns one ONNX Runtime
// session and runs the KVzip graph on the contexts it is sent.
import { parentPort } from 'node:worker_threads';
import { createSession, type ort } from '../runtime/session.js';
import { scoreContext } from './score-context.js';
import type { RunnerSpec } from './context-runner.js';
import type { KvzipFeeds } from './inputs.js';
import type { HiddenTarget } from './hidden-buffers.js';
import { UserError } from '../util/errors.js';

let session: ort.InferenceSession | null = null;
let spec: RunnerSpec | null = null;

type Msg = { kind: 'init'; spec: RunnerSpec } | { kind: 'run'; feeds: KvzipFeeds; into?: HiddenTarget } | { kind: 'release' };

parentPort!.on('message', async (m: Msg) => {
  try {
    if (m.kind === 'init') {
      spec = m.spec;
      session = await createSession(spec.modelPath, spec.device);
      parentPort!.postMessage({ ok: true });
    } else if (m.kind === 'run') {
      const t = process.hrtime.bigint();
      const res = await scoreContext(session!, m.feeds, spec!.numScored, spec!.numKvHeads, m.into);
      const runSeconds = Number(process.hrtime.bigint() - t) / 1e9;
      // the hidden arrays are the caller's buffers when given (ORT's own outputs are copied instead)
      const transfer = [...(m.into ? res.hidden : []), ...res.scores].map((a) => a.buffer as ArrayBuffer).filter((b, i, all) => all.indexOf(b) === i);
      parentPort!.postMessage({ ok: true, res: { ...res, runSeconds } }, transfer);
    } else {
      await session?.release();
      session = null;
      parentPort!.postMessage({ ok: true });
    }
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: (e as Error).message, userError: e instanceof UserError });
  }
});
