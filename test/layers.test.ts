// The layers of src/, in the order of the README's layout: a module may import from its own
// layer and the layers below it, never from one above (docs: README "Layout").
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

/** Bottom to top. A top-level file of src/ is its own layer (config.ts: the presets the CLI reads). */
const LAYERS = ['util', 'version', 'hub', 'data', 'model', 'onnx', 'runtime', 'features', 'kvzip', 'gate', 'export', 'eval', 'scale', 'config', 'cli'];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const layerOf = (file: string): string => path.relative(SRC, file).split(path.sep)[0]!.replace(/\.ts$/, '');

/** Relative module specifiers of static imports, re-exports and import() calls. */
function imports(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"](\.[^'"]+)['"]/gm)) out.push(m[1]!);
  return out;
}

describe('src/ layers', () => {
  const all = files(SRC);

  it('every file belongs to a known layer', () => {
    expect(all.map(layerOf).filter((l) => !LAYERS.includes(l))).toEqual([]);
  });

  it('no module imports from a layer above its own', () => {
    const upward: string[] = [];
    for (const file of all) {
      const from = layerOf(file);
      for (const spec of imports(readFileSync(file, 'utf8'))) {
        const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts');
        const to = layerOf(target);
        if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) upward.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('sees the imports it checks (the pattern is not blind)', () => {
    const cli = readFileSync(path.join(SRC, 'cli', 'export.ts'), 'utf8');
    expect(imports(cli)).toContain('../export/index.js');
  });
});
