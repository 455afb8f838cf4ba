// eval.json, eval.md and quality.svg from an EvalReport.
import * as path from 'node:path';
import type { EvalCell, EvalReport } from './evaluate.js';
import { qualitySvg } from './plot.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';

const pct = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)}` : '–');
const num = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : '–');

function table(report: EvalReport, title: string, value: (c: EvalCell) => string): string {
  const ratios = report.settings.ratios;
  const lines = [`**${title}**`, '', `| scorer | ${ratios.map((r) => `${r}`).join(' | ')} |`, `| --- | ${ratios.map(() => '---:').join(' | ')} |`];
  for (const s of report.settings.scorers) {
    const row = ratios.map((r) => {
      const c = report.cells.find((x) => x.scorer === s && x.ratio === r);
      return c ? value(c) : '';
    });
    lines.push(`| ${s} | ${row.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The measured tables (no prose): what `eval` prints and eval.md starts with. */
export function formatEvalTables(report: EvalReport): string {
  const ref = report.reference;
  return [
    `Full cache (ratio 1.0): reconstruction accuracy ${pct(ref.recon.acc)} %, mean log-likelihood ${num(ref.recon.logLik)} nats/token over ${ref.recon.tokens} tokens; retrieval exact match ${pct(ref.retrieval.acc)} % of ${ref.retrieval.queries} queries.`,
    '',
    table(report, 'Reconstruction accuracy, relative to the full cache (%)', (c) => pct(c.recon.accRel)),
    '',
    table(report, 'Reconstruction log-likelihood minus the full cache (nats/token)', (c) => num(c.recon.logLikDelta)),
    '',
    table(report, 'Retrieval exact match (%)', (c) => pct(c.retrieval.acc)),
    '',
    table(report, 'Agreement: recall of the KVzip top-k by the scorer top-k (%, mean over layers, uncompressed pass)', (c) => pct(c.agreement)),
    '',
    table(report, 'Measured KV kept (% of context entries in scored layers)', (c) => pct(c.kept)),
    ...(report.cells.some((c) => c.cache)
      ? ['', table(report, 'Compressed cache bytes after prefill, % of the full cache (padding share in brackets)', (c) => (c.cache ? `${pct(c.cache.bytes / c.cache.fullBytes)} (${pct(c.cache.paddingBytes / c.cache.fullBytes)})` : ''))]
      : []),
  ].join('\n');
}

export function formatDiagnostics(report: EvalReport): string {
  const layers = report.model.scoredLayers;
  const kept = [
    `**Measured KV kept per scored layer (%, ${report.settings.level} level)**`,
    '',
    `| scorer | ratio | ${layers.map((l) => `L${l}`).join(' | ')} |`,
    `| --- | ---: | ${layers.map(() => '---:').join(' | ')} |`,
    ...report.cells.filter((c) => c.ratio < 1).map((c) => `| ${c.scorer} | ${c.ratio} | ${c.keptPerLayer.map(pct).join(' | ')} |`),
  ];
  const lines = [
    ...kept,
    '',
    '**Scores vs the KVzip oracle on the uncompressed pass (per scored layer)**',
    '',
    `| scorer | measure | ${layers.map((l) => `L${l}`).join(' | ')} |`,
    `| --- | --- | ${layers.map(() => '---:').join(' | ')} |`,
  ];
  for (const [s, d] of Object.entries(report.diagnostics)) {
    for (const [k, v] of Object.entries(d) as [string, number[]][]) lines.push(`| ${s} | ${k} | ${v.map((x) => num(x)).join(' | ')} |`);
  }
  return lines.join('\n');
}

export function formatEvalMarkdown(report: EvalReport, notes = ''): string {
  const s = report.settings;
  const ctx = report.contexts.map((c) => `${c.id} (${c.tokens} tokens, window ${c.window})`).join(', ');
  return [
    `# Fast KVzip evaluation: ${report.model.id}`,
    '',
    report.command ? `Command: \`${report.command}\`` : '',
    '',
    `- model: ${report.model.id} (scored layers ${report.model.scoredLayers.join(', ')}, ${report.model.heads} KV heads, ${report.model.computeDtype} on ${s.device})`,
    `- gates: ${report.gates?.file ?? '(not evaluated)'}`,
    `- contexts (${report.contexts.length}, template ${report.template}, data ${report.data}): ${ctx}`,
    `- eviction: level ${s.level}, prefill chunk ${s.prefillChunk}, window ${s.window.window} (or ${s.window.windowRatio} of contexts shorter than ${s.window.shortContext}); prefix never evicted`,
    `- measures: reconstruction = ${s.reconChunks || 'all'} repeat chunk(s) of ${s.reconChunk} tokens per context; retrieval = ${s.kvPairs} key–value pair(s) per context, greedy, ${s.maxNewTokens} new tokens; KVzip oracle reconstruction chunk ${s.scoreChunk}; SnapKV window ${s.snapWindow}, avg-pool ${s.snapKernel}`,
    `- memory: ${s.memory}`,
    `- time: ${report.seconds.toFixed(1)} s`,
    '',
    '![quality vs ratio](quality.svg)',
    '',
    formatEvalTables(report),
    '',
    formatDiagnostics(report),
    '',
    notes,
  ].join('\n');
}

export async function writeEvalOutputs(dir: string, report: EvalReport, notes = ''): Promise<string[]> {
  const files = [path.join(dir, 'eval.json'), path.join(dir, 'eval.md'), path.join(dir, 'quality.svg')];
  await writeJsonAtomic(files[0]!, report);
  await writeFileAtomic(files[1]!, formatEvalMarkdown(report, notes));
  await writeFileAtomic(files[2]!, qualitySvg(report, `Fast KVzip eval — ${report.model.id} (${report.settings.level} level)`));
  return files;
}
