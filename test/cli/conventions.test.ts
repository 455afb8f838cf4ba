// One vocabulary across commands (issue 14): config keys are checked, `run` takes overrides and
// --dry-run, flag values are validated, exit codes follow the convention (2 bad command line,
// 1 runtime failure), every --help lists its environment variables and the exit codes.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, parseOverride, validateConfig } from '../../src/config.js';
import { ENV_VARS, COMMAND_ENV } from '../../src/cli/env-help.js';
import { EtaClock } from '../../src/util/progress.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-cli-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const fkz = (args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe('config files and overrides', () => {
  it('every preset is valid', () => {
    for (const f of readdirSync(path.join(ROOT, 'configs')).filter((f) => f.endsWith('.json') && f !== 'templates.json')) {
      expect(() => loadConfig(f.replace(/\.json$/, '')), f).not.toThrow();
    }
  });

  it('an unknown key is refused, naming it and the closest valid key', () => {
    const file = path.join(tmp, 'typo.json');
    writeFileSync(file, JSON.stringify({ extends: 'ci', train: { step: 50 }, recipe: { maxToken: 10 } }));
    const r = fkz(['run', '--config', file, '--dry-run']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown key "train.step" (did you mean "train.steps"?)');
    expect(r.stderr).toContain('unknown key "recipe.maxToken" (did you mean "recipe.maxTokens"?)');
    expect(r.stderr).toContain(file);
    expect(validateConfig({ train: { lr: -1 } })).toEqual(['"train.lr" must be a positive number (got -1)']);
  });

  it('--set overrides any key, checked like the file', () => {
    expect(loadConfig('ci', [parseOverride('train.steps=50'), parseOverride('export.formats=pt,onnx')])).toMatchObject({ train: { steps: 50 }, export: { formats: ['pt', 'onnx'] } });
    const r = fkz(['run', '--config', 'ci', '--set', 'train.step=50', '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('did you mean "train.steps"?');
    expect(fkz(['run', '--config', 'ci', '--set', 'train.lr=-1', '--dry-run']).code).toBe(2);
  });

  it('run --dry-run prints the plan without running the model, and the stage flags override the preset', () => {
    const r = fkz(['run', '--config', 'ci', '--dry-run', '--steps', '50', '--json', '--out', path.join(tmp, 'never')]);
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p.contexts).toBe(5);
    expect(p.tokens).toBe(15275); // what `run --config ci` extracts
    expect(p.disk.storeBytes).toBeGreaterThan(25e6);
    expect(p.time.extractSeconds).toBeGreaterThan(0);
    expect(p.time.trainSeconds).toBeGreaterThan(0);
    expect(() => statSync(path.join(tmp, 'never'))).toThrow(); // nothing written
    const human = fkz(['run', '--config', 'ci', '--dry-run', '--steps', '50', '--out', path.join(tmp, 'never')]);
    expect(human.stdout).toMatch(/^plan for ci/);
    expect(human.stdout).toContain('train: 50 steps');
    expect(human.stdout).toMatch(/time: extraction ≈ .*, training ≈ /);
  });
});

describe('flag values and exit codes', () => {
  const cases: [string[], RegExp][] = [
    [['train', '--features', 'x', '--out', 'y', '--lr', '-1'], /--lr must be positive/],
    [['train', '--features', 'x', '--out', 'y', '--momentum', '1'], /--momentum must be in \[0, 1\)/],
    [['train', '--features', 'x', '--out', 'y', '--subsample', '0'], /--subsample must be in \(0, 1\]/],
    [['train', '--features', 'x', '--out', 'y', '--seed', '1.5'], /--seed must be a non-negative integer/],
    [['train', '--bogus'], /unknown option|required option/],
    [['extract', '--model', 'm', '--out', 'o', '--shard', '3'], /--shard must look like i\/n/],
    [['eval', '--contexts', '2'], /--model is required/],
    [['eval', '--model', 'm', '--ratios', '2'], /--ratios: 2 is not in \(0, 1\]/],
  ];
  for (const [args, message] of cases) {
    it(`${args.join(' ')} -> exit 2`, () => {
      const r = fkz(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    });
  }

  it('a runtime failure (a missing store) exits 1', () => {
    const r = fkz(['train', '--features', path.join(tmp, 'nothing'), '--out', path.join(tmp, 'g')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nothing');
  });

  it('list defaults print comma-separated, as they are typed', () => {
    const help = fkz(['eval', '--help']).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('(default: 1,0.75,0.5,0.4,0.3,0.2,0.1)');
    expect(help).not.toMatch(/default: \[/);
  });
});

describe('--help', () => {
  for (const [command, vars] of Object.entries(COMMAND_ENV)) {
    it(`${command} lists its environment variables and the exit codes`, () => {
      const r = fkz([command, '--help']);
      expect(r.code).toBe(0);
      for (const v of vars) expect(r.stdout).toContain(`  ${v} `);
      expect(r.stdout).toContain('Exit codes: 0 success, 1 runtime failure');
    });
  }

  it('lists every HF_*/FASTKVZIP_* variable the sources read', () => {
    const read = new Set<string>();
    const walk = (dir: string) => {
      for (const f of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, f.name);
        if (f.isDirectory()) walk(p);
        else if (f.name.endsWith('.ts') && !p.endsWith('env-help.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/\benv\.((?:HF|FASTKVZIP)_[A-Z_]+)/g)) read.add(m[1]!);
      }
    };
    walk(path.join(ROOT, 'src'));
    const documented = Object.entries(ENV_VARS).flatMap(([k, v]) => [k, ...v.matchAll(/\b(?:HF|HUGGING_FACE|HUGGINGFACE)_[A-Z_]+/g)].map((x) => (typeof x === 'string' ? x : x[0])));
    const internal = ['FASTKVZIP_HOST_MALLOC_PARENT'];
    for (const v of read) if (!internal.includes(v)) expect(documented, v).toContain(v);
  });
});

describe('ETA', () => {
  it('is unknown until work has been timed, ignores setup time, and never says 0 s while work remains', () => {
    let t = 0;
    const c = new EtaClock(() => t);
    t = 60_000; // a minute of setup before the first step
    expect(c.eta(0, 100)).toBeNaN();
    expect(c.eta(1, 100)).toBeNaN();
    t += 1000;
    expect(c.eta(2, 100)).toBeNaN(); // one timed update, one second
    t += 2000;
    expect(c.eta(4, 100)).toBeCloseTo(96, 5); // 3 steps in 3 s since the first: 1 step/s
    t += 1000;
    expect(c.eta(99.999, 100)).toBe(1);
    expect(c.eta(100, 100)).toBe(0);
  });
});

describe('run: output and re-runs', () => {
  it('prints the human summary on stdout; a re-run of a finished run keeps run.json, the train summary and the card', () => {
    const out = path.join(tmp, 'ci');
    const first = fkz(['run', '--config', 'ci', '--out', out, '--quiet']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^done in [\d.]+ s/);
    expect(first.stdout).toContain('exported: ci/export/default-model/q2_dim16_sink16.pt'); // relative to the working folder
    const files = ['run.json', 'train/summary.json', 'export/README.md'].map((f) => path.join(out, f));
    const before = files.map((f) => readFileSync(f, 'utf8'));
    const again = fkz(['run', '--config', 'ci', '--out', out, '--quiet']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^already complete in ci: nothing was redone/);
    expect(files.map((f) => readFileSync(f, 'utf8'))).toEqual(before);
  });
});

