// docs/method.md maps every formula to file:function, Python reference and test. This keeps the
// map true: every file it names exists, and every function named beside a file is defined in it.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOC = readFileSync(path.join(ROOT, 'docs', 'method.md'), 'utf8');
const PATH = /^((?:src|test|tools|bench|configs)\/[\w./-]+?)(?::([\w.]+))?$/;
const NAME = /^[A-Za-z_]\w*(?:\.\w+)?$/;

/** [file, name] pairs of the tables: a name stands after its file in the same cell. */
function references(): { files: Set<string>; names: [string, string][] } {
  const files = new Set<string>();
  const names: [string, string][] = [];
  for (const line of DOC.split('\n').filter((l) => l.startsWith('|'))) {
    for (const cell of line.split('|')) {
      let file: string | undefined;
      for (const [, token] of cell.matchAll(/`([^`]+)`/g)) {
        const m = PATH.exec(token!);
        if (m) {
          file = m[1]!;
          files.add(file);
          if (m[2]) names.push([file, m[2]]);
        } else if (file && /\.(ts|py)$/.test(file) && NAME.test(token!)) {
          names.push([file, token!]);
        }
      }
    }
  }
  return { files, names };
}

/** Whether `file` defines `name` (a class member as Class.member). */
function defines(file: string, name: string): boolean {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const last = name.split('.').pop()!;
  const def = new RegExp(`(?:function|class|const|let|def|interface|type)\\s+${last}\\b|\\b${last}\\s*\\(|\\b${last}\\s*[:=]|"${last}"`);
  return def.test(text);
}

describe('docs/method.md', () => {
  const { files, names } = references();

  it('names files that exist', () => {
    expect(files.size).toBeGreaterThan(30);
    expect([...files].filter((f) => !existsSync(path.join(ROOT, f)))).toEqual([]);
  });

  it('names functions where they are defined', () => {
    expect(names.length).toBeGreaterThan(50);
    expect(names.filter(([f, n]) => existsSync(path.join(ROOT, f)) && !defines(f, n)).map(([f, n]) => `${f}:${n}`)).toEqual([]);
  });

  it('is what the code cites: every "docs/method.md §n" in src/ names a section that exists', () => {
    const sections = new Set([...DOC.matchAll(/^#{2,3} §([\d.]+)/gm)].map((m) => m[1]));
    const cited = new Set<string>();
    const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(path.join(dir, n)).isDirectory() ? walk(path.join(dir, n)) : [path.join(dir, n)]));
    for (const f of walk(path.join(ROOT, 'src'))) for (const m of readFileSync(f, 'utf8').matchAll(/docs\/method\.md §([\d.]+)(?:, §([\d.]+))?/g)) for (const s of m.slice(1)) if (s) cited.add(s);
    expect(cited.size).toBeGreaterThan(5);
    expect([...cited].filter((s) => !sections.has(s))).toEqual([]);
  });
});
