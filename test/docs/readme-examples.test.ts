// The README's shell examples write only under runs/ (git-ignored): running them must not change
// the tracked tree (issue 14: the eval example used to rewrite reports/eval-default/).
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
/** every command of the ```sh blocks, continuation lines joined */
const commands = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
  .flatMap((m) => m[1]!.replace(/\\\n\s*/g, ' ').split('\n'))
  .map((l) => l.replace(/#.*$/, '').trim())
  .filter((l) => /\bfastkvzip\b|bin\/fastkvzip\.js/.test(l));

describe('README examples', () => {
  it('are found', () => expect(commands.length).toBeGreaterThan(8));

  it('write only under runs/', () => {
    const outs: string[] = [];
    for (const c of commands) {
      for (const m of c.matchAll(/--out\s+(\S+)/g)) outs.push(m[1]!);
      const conv = /convert-llama2c\s+\S+\s+\S+\s+(\S+)/.exec(c);
      if (conv) outs.push(conv[1]!);
    }
    expect(outs.length).toBeGreaterThan(5);
    for (const o of outs) expect(o, o).toMatch(/^runs\//);
    expect(readFileSync(path.join(ROOT, '.gitignore'), 'utf8')).toMatch(/^\/runs\/$/m);
  });

  it('eval examples that use the committed findings pass --notes', () => {
    for (const c of commands.filter((c) => /\beval\b/.test(c) && /--config default/.test(c))) expect(c).toContain('--notes reports/eval-default/notes.md');
  });
});
