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

/** updates (past the first) and seconds of work needed before an ETA is shown */
export const ETA_MIN_UPDATES = 2;
export const ETA_MIN_SECONDS = 2;

/**
 * ETA from the rate since the first update, not since start: setup (graph building, loading)
 * before the first step would otherwise inflate the first estimates ("47 min" at step 1).
 * Unknown ("?") until enough work has been timed; never "0s" while work remains.
 */
export class EtaClock {
  private first: { t: number; v: number } | null = null;
  private updates = 0;
  constructor(private readonly now: () => number = Date.now) {}
  /** seconds left for `value` of `total`, or NaN while unknown */
  eta(value: number, total: number): number {
    const t = this.now();
    if (!this.first) {
      if (value > 0 || total === 0) this.first = { t, v: value };
      return value >= total ? 0 : NaN;
    }
    this.updates++;
    if (value >= total) return 0;
    const dt = (t - this.first.t) / 1000;
    const dv = value - this.first.v;
    if (this.updates < ETA_MIN_UPDATES || dt < ETA_MIN_SECONDS || dv <= 0) return NaN;
    return Math.max(1, (total - value) / (dv / dt));
  }
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
        format: `${o.label} [{bar}] {percentage}% {value}/{total}${unit ? ' ' + unit : ''} | ETA {etaText} | {fields}`,
        stream,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    const clock = new EtaClock();
    bar.start(total, 0, { fields: '', etaText: '?' });
    return {
      update: (v, f) => bar.update(v, { fields: f ? fmtFields(f) : '', etaText: fmtEta(clock.eta(v, total)) }),
      setTotal: (t) => bar.setTotal((total = t)),
      log: (line) => {
        bar.stop();
        stream.write(line + '\n');
        bar.start(total, (bar as unknown as { value: number }).value, { fields: '', etaText: '?' });
      },
      stop: () => bar.stop(),
    };
  }
  const interval = (o.plainInterval ?? 5) * 1000;
  const clock = new EtaClock();
  let last = 0;
  let lastValue = 0;
  let lastFields: Record<string, string | number> | undefined;
  let eta = NaN;
  const line = (v: number, f?: Record<string, string | number>) => {
    const elapsed = (Date.now() - start) / 1000;
    const pct = total > 0 ? ((100 * v) / total).toFixed(1) : '?';
    stream.write(`${o.label}: ${v}/${total}${unit ? ' ' + unit : ''} (${pct}%) elapsed ${fmtEta(elapsed)} ETA ${fmtEta(eta)}${f ? '  ' + fmtFields(f) : ''}\n`);
  };
  return {
    update(v, f) {
      lastValue = v;
      lastFields = f;
      eta = clock.eta(v, total);
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
