// Worker processes of one host: each a `fastkvzip` child on its own device, its stderr passed
// on line by line under a label. The first worker that fails stops the others gracefully
// (SIGTERM: they finish the context in hand and leave their part resumable) and fails the
// command with its error; Ctrl-C or a scheduler's SIGTERM reaches every worker the same way.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { UserError, EXIT } from '../util/errors.js';

/** The CLI the workers run: this package's own bin (dist/ through bin/fastkvzip.js). */
export const FASTKVZIP_BIN = fileURLToPath(new URL('../../bin/fastkvzip.js', import.meta.url));

export interface WorkerJob {
  /** e.g. "worker 1/2 (GPU 0)" */
  label: string;
  /** fastkvzip arguments, e.g. ['extract', …] */
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export interface WorkerResult {
  label: string;
  /** exit code (null when killed by a signal) */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** the worker's own one-line error ("fastkvzip: …"), if it printed one */
  error: string | null;
  seconds: number;
}

export interface RunWorkersOptions {
  /** a line of a worker's stderr, already labelled */
  log: (line: string) => void;
  /** called about once a second while workers run (progress polling) */
  onTick?: () => void;
  tickMs?: number;
}

/** Runs every job at once; resolves when all have exited, throws (after all have exited) when one failed. */
export async function runWorkers(jobs: WorkerJob[], o: RunWorkersOptions): Promise<WorkerResult[]> {
  const children: ChildProcess[] = [];
  let firstFailure: WorkerResult | null = null;
  let interrupted = false;
  const stopOthers = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (!interrupted) o.log(`${sig}: stopping ${jobs.length} worker(s); each keeps what it finished (rerun the same command to resume)`);
    interrupted = true;
    stopOthers();
  };
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const tick = o.onTick ? setInterval(o.onTick, o.tickMs ?? 1000) : null;
  try {
    const results = await Promise.all(
      jobs.map(
        (job) =>
          new Promise<WorkerResult>((resolve) => {
            const t0 = Date.now();
            const child = spawn(process.execPath, [FASTKVZIP_BIN, ...job.args], { env: job.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
            children.push(child);
            let stdout = '';
            let error: string | null = null;
            let pending = '';
            child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
            const emit = (line: string) => {
              if (line.startsWith('fastkvzip: ')) error = line.slice('fastkvzip: '.length);
              if (line.trim()) o.log(`[${job.label}] ${line}`);
            };
            child.stderr!.setEncoding('utf8').on('data', (d: string) => {
              const lines = (pending + d).split('\n');
              pending = lines.pop()!;
              lines.forEach(emit);
            });
            const done = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
              if (pending) emit(pending);
              pending = '';
              const r: WorkerResult = { label: job.label, code, signal, stdout, error: spawnError ? spawnError.message : error, seconds: (Date.now() - t0) / 1000 };
              // a worker we stopped (exit 130) is not the failure; the first real one is
              if (code !== 0 && !firstFailure && !(code === EXIT.interrupted && (interrupted || firstFailure))) {
                firstFailure = r;
                if (!interrupted) o.log(`[${job.label}] failed; stopping the other worker(s) (their parts stay resumable)`);
                stopOthers();
              }
              resolve(r);
            };
            child.on('error', (e) => done(null, null, e));
            child.on('close', (code, signal) => done(code, signal));
          }),
      ),
    );
    if (interrupted) throw new UserError('interrupted; every worker kept what it finished: rerun the same command to resume', EXIT.interrupted);
    const failed = firstFailure as WorkerResult | null;
    if (failed) {
      const why = failed.error ?? (failed.signal ? `killed by ${failed.signal}${failed.signal === 'SIGKILL' ? ' (out of memory?)' : ''}` : `exit code ${failed.code}`);
      const code = failed.code !== null && failed.code !== 0 && failed.code !== EXIT.interrupted ? failed.code : EXIT.failure;
      throw new UserError(`${failed.label} failed: ${why}; the other workers' parts are kept: fix the cause and rerun the same command to resume`, code);
    }
    return results;
  } finally {
    if (tick) clearInterval(tick);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
