// `fastkvzip merge-features`: one store from the stores of an `extract --shard i/n` run.
import { Command } from 'commander';
import { printJson } from './common.js';
import { mergeStores, verifyStore } from '../features/index.js';

export function mergeCommand(): Command {
  return new Command('merge-features')
    .description('merge the feature stores of `extract --shard i/n` runs (hard links when possible)')
    .argument('<stores...>', 'store directories of the parts')
    .requiredOption('--out <dir>', 'merged store directory')
    .option('--copy', 'copy shard files instead of hard-linking them')
    .option('--allow-incomplete', 'accept parts whose extraction has not finished')
    .option('--verify', 'check every shard (sha256 and layout) before merging; a bad shard fails the merge and nothing is written')
    .option('--json', 'print the merged manifest totals as JSON')
    .action(async (stores: string[], o) => {
      const m = await mergeStores(o.out, stores, { mode: o.copy ? 'copy' : 'link', allowIncomplete: o.allowIncomplete, verify: o.verify });
      const verified = o.verify ? await verifyStore(o.out) : null; // the merged result, as a final check
      const summary = { out: o.out, parts: stores.length, totals: m.totals, complete: m.complete, verified: verified ? verified.ok : null, problems: verified?.problems ?? [] };
      if (o.json) printJson(summary);
      else process.stdout.write(`merged ${stores.length} stores into ${o.out}: ${m.totals.contexts} contexts, ${m.totals.tokens} tokens${m.complete ? '' : ' (incomplete)'}${verified ? (verified.ok ? ', checksums verified' : `, ${verified.problems.length} problem(s)`) : ''}\n`);
      if (verified && !verified.ok) process.exitCode = 1;
    });
}
