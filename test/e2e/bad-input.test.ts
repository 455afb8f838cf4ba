// Bad inputs through the CLI: a one-line error naming the file and the problem, a non-zero exit.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from '../helpers/golden.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-bad-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };

function broken(name: string, damage: (dir: string) => void): string {
  const dir = path.join(tmp, name);
  cpSync(modelDir('qwen3'), dir, { recursive: true });
  damage(dir);
  return dir;
}

function generate(model: string) {
  const r = spawnSync(process.execPath, [BIN, 'generate', '--model', model, '--prompt', 'The keeper', '--max-new-tokens', '2'], { env, encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr.trim(), stdout: r.stdout };
}

const cases: [string, (dir: string) => void, RegExp, string][] = [
  ['missing config.json', (d) => rmSync(path.join(d, 'config.json')), /config\.json: missing/, 'config.json'],
  ['corrupt config.json', (d) => writeFileSync(path.join(d, 'config.json'), '{"model_type": "qwen3", '), /config\.json: not valid JSON/, 'config.json'],
  ['truncated safetensors', (d) => truncateSync(path.join(d, 'model.safetensors'), statSync(path.join(d, 'model.safetensors')).size - 100), /model\.safetensors: .*truncated/, 'model.safetensors'],
  ['unsupported architecture', (d) => {
    const c = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
    writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...c, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }));
  }, /unsupported architecture: model_type "gpt2"/, 'config.json'],
  ['tokenizer missing', (d) => rmSync(path.join(d, 'tokenizer.json')), /tokenizer\.json: missing/, 'tokenizer.json'],
];

describe('bad model folders fail with one clear line', () => {
  for (const [name, damage, message, file] of cases) {
    it(name, () => {
      const r = generate(broken(name.replace(/\W+/g, '-'), damage));
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(lines[0]).toContain(file);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
  }

  it('an unknown --device is refused', () => {
    const r = spawnSync(process.execPath, [BIN, 'generate', '--model', modelDir('qwen3'), '--prompt', 'x', '--device', 'tpu'], { env, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--device/);
  });

  it('a healthy folder generates', () => {
    const r = generate(modelDir('qwen3'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.startsWith('The keeper')).toBe(true);
  });
});
