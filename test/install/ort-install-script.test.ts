// The documented installs, checked offline with the npm on this machine: a project with this
// repository's package.json `allowScripts` and .npmrc installs a stub onnxruntime-node (same
// name and version, from a registry on localhost, so npm's install-script policy matches it as it
// matches the real registry package) whose postinstall records the value ONNX Runtime's install
// script reads (ONNXRUNTIME_NODE_INSTALL, else npm_config_onnxruntime_node_install) and whether
// the real script's parseInstallFlag() then skips (on linux/x64 anything but a skip installs the
// missing CUDA 12 provider: its default manifest there is cuda12).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const rootPkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const ORT_VERSION: string = rootPkg.dependencies['onnxruntime-node'];
const INSTALL_UTILS = path.join(ROOT, 'node_modules', 'onnxruntime-node', 'script', 'install-utils.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-npm-'));
const LOG = path.join(tmp, 'postinstall.log');
let server: http.Server;
let registry = '';

/** npm's environment without what the npm running this test exported (npm_config_* from our .npmrc) */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_|^ONNXRUNTIME_NODE_INSTALL/i.test(k)) env[k] = v;
  return { ...env, npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_update_notifier: 'false', STUB_LOG: LOG, ...extra };
}

/** Asynchronous: the registry answering npm runs in this process. */
async function npm(cwd: string, args: string[], extra: Record<string, string> = {}): Promise<string> {
  try {
    const r = await execFileAsync('npm', [...args, '--no-audit', '--no-fund'], { cwd, env: cleanEnv(extra), encoding: 'utf8', timeout: 60_000 });
    return r.stdout + r.stderr;
  } catch (e) {
    const x = e as { code?: unknown; stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} failed (${String(x.code)}): ${x.stdout}${x.stderr}`);
  }
}

/** What the stub's postinstall saw, one entry per run. */
function runs(): { seen: string | null; skip: boolean }[] {
  try {
    return readFileSync(LOG, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

const npmAvailable = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!npmAvailable)('onnxruntime-node install script under npm ' + (npmAvailable ? execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim() : '(missing)'), () => {
  const project = path.join(tmp, 'project');

  beforeAll(async () => {
    // the stub package: records parseInstallFlag() of the real install script
    const stub = path.join(tmp, 'stub');
    mkdirSync(stub, { recursive: true });
    const record = `const e=process.env,f=require(${JSON.stringify(INSTALL_UTILS)}).parseInstallFlag();require('fs').appendFileSync(e.STUB_LOG,JSON.stringify({seen:e.ONNXRUNTIME_NODE_INSTALL||e.npm_config_onnxruntime_node_install||null,skip:f===false})+'\\n')`;
    writeFileSync(path.join(stub, 'record.js'), record);
    const stubPkg = { name: 'onnxruntime-node', version: ORT_VERSION, scripts: { postinstall: 'node record.js' } };
    writeFileSync(path.join(stub, 'package.json'), JSON.stringify(stubPkg));
    const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', tmp], { cwd: stub, env: cleanEnv(), encoding: 'utf8' }).trim().split('\n').at(-1)!;
    const tgz = readFileSync(path.join(tmp, packed));
    const dist = { integrity: 'sha512-' + createHash('sha512').update(tgz).digest('base64'), shasum: createHash('sha1').update(tgz).digest('hex') };
    server = http.createServer((req, res) => {
      if (req.url === '/onnxruntime-node') {
        res.setHeader('content-type', 'application/json');
        const version = { ...stubPkg, dist: { ...dist, tarball: `${registry}onnxruntime-node/-/${packed}` } };
        res.end(JSON.stringify({ name: stubPkg.name, 'dist-tags': { latest: ORT_VERSION }, versions: { [ORT_VERSION]: version } }));
      } else if (req.url?.endsWith('.tgz')) res.end(tgz);
      else {
        res.statusCode = 404;
        res.end('{}');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

    // the project: our allowScripts policy and our .npmrc, pointed at the local registry
    mkdirSync(project, { recursive: true });
    const pkg = { name: 'install-check', version: '1.0.0', private: true, dependencies: { 'onnxruntime-node': ORT_VERSION }, allowScripts: rootPkg.allowScripts };
    writeFileSync(path.join(project, 'package.json'), JSON.stringify(pkg, null, 2));
    copyFileSync(path.join(ROOT, '.npmrc'), path.join(project, '.npmrc'));
    writeFileSync(path.join(project, '.npmrc'), readFileSync(path.join(project, '.npmrc'), 'utf8') + `\nregistry=${registry}\n`);
    await npm(project, ['install']); // writes the lockfile `npm ci` needs
  }, 120_000);

  afterAll(() => {
    server?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const fresh = async (args: string[], extra?: Record<string, string>) => {
    rmSync(path.join(project, 'node_modules'), { recursive: true, force: true });
    rmSync(LOG, { force: true });
    await npm(project, args, extra);
    return runs();
  };

  it('package.json approves the onnxruntime-node install script (npm 11 skips a `false` entry silently)', () => {
    expect(rootPkg.allowScripts?.['onnxruntime-node']).toBe(true);
  });

  it('plain `npm ci` reaches the script, which sees "skip" from .npmrc (offline CPU install)', async () => {
    expect(await fresh(['ci'])).toEqual([{ seen: 'skip', skip: true }]);
  });

  it('`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` reaches the script with cuda12', async () => {
    expect(await fresh(['ci'], { ONNXRUNTIME_NODE_INSTALL: 'cuda12' })).toEqual([{ seen: 'cuda12', skip: false }]);
  });

  it('`ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (the CUDA error\'s advice) reaches it with cuda12', async () => {
    await fresh(['ci']);
    rmSync(LOG, { force: true });
    await npm(project, ['rebuild', 'onnxruntime-node'], { ONNXRUNTIME_NODE_INSTALL: 'cuda12' });
    expect(runs()).toEqual([{ seen: 'cuda12', skip: false }]);
  });
});
