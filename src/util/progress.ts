// Progress display for long jobs: a cli-progress bar with ETA on a TTY, plain snapshot lines
// (every few seconds) otherwise, nothing when quiet. Always on stderr, so stdout stays for
// --json summaries.
import cliProgress from 'cli-progress';

export interface Progress {
  /** advance to `value` (of `total`) and refresh the extra fields shown after the bar */
  update(value: number, fields?: Record<string, string | number>): void;
  setTotal(total: number): void;
  /** a line of text that does not break the bar */
  log(line: string): void;
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  /** unit shown after the counts (e.g. "tok", "steps") */
  unit?: string;
  quiet?: boolean;
  /** force plain lines even on a TTY (tests, CI) */
  plain?: boolean;
  /** seconds between plain lines */
  plainInterval?: number;
  stream?: NodeJS.WriteStream;
}

function fmtEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fmtFields(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toPrecision(4)) : v}`)
    .join('  ');
}

export function createProgress(o: ProgressOptions): Progress {
  const stream = o.stream ?? process.stderr;
  if (o.quiet) return { update() {}, setTotal() {}, log() {}, stop() {} };
  const unit = o.unit ?? '';
  const start = Date.now();
  let total = o.total;
  if (!o.plain && stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${o.label} [{bar}] {percentage}% {value}/{total}${unit ? ' ' + unit : ''} | ETA {eta_formatted} | {fields}`,
        stream,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { fields: '' });
    return {
      update: (v, f) => bar.update(v, { fields: f ? fmtFields(f) : '' }),
      setTotal: (t) => bar.setTotal((total = t)),
      log: (line) => {
        bar.stop();
        stream.write(line + '\n');
        bar.start(total, (bar as unknown as { value: number }).value, {});
      },
      stop: () => bar.stop(),
    };
  }
  const interval = (o.plainInterval ?? 5) * 1000;
  let last = 0;
  let lastValue = 0;
  let lastFields: Record<string, string | number> | undefined;
  const line = (v: number, f?: Record<string, string | number>) => {
    const elapsed = (Date.now() - start) / 1000;
    const rate = v / Math.max(elapsed, 1e-9);
    const eta = v > 0 ? (total - v) / rate : NaN;
    const pct = total > 0 ? ((100 * v) / total).toFixed(1) : '?';
    stream.write(`${o.label}: ${v}/${total}${unit ? ' ' + unit : ''} (${pct}%) elapsed ${fmtEta(elapsed)} ETA ${fmtEta(eta)}${f ? '  ' + fmtFields(f) : ''}\n`);
  };
  return {
    update(v, f) {
      lastValue = v;
      lastFields = f;
      const now = Date.now();
      if (now - last >= interval || v >= total) {
        last = now;
        line(v, f);
      }
    },
    setTotal: (t) => (total = t),
    log: (l) => stream.write(l + '\n'),
    stop() {
      if (lastValue < total && lastValue > 0) line(lastValue, lastFields);
    },
  };
}
