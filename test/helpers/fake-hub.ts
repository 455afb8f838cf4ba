// A local stand-in for huggingface.co that answers what @huggingface/hub 2.17.5 asks for
// (read from node_modules/@huggingface/hub/src/lib): model/dataset info, paths-info, file
// resolution with Range probes and LFS redirects to a separate "CDN" origin, repo creation,
// preupload, the LFS batch API with basic PUT uploads, and ndjson commits. It records every
// request so tests can check headers (e.g. that the token goes to the Hub and nowhere else).
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeRepoType = 'model' | 'dataset';

export interface FakeFile {
  content: Buffer;
  lfs: boolean;
  /** git blob sha1 */
  oid: string;
  sha256: string;
}

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: Record<string, string>;
}

interface FakeRepo {
  type: FakeRepoType;
  name: string;
  private: boolean;
  branches: Map<string, string>;
  commits: Map<string, Map<string, FakeFile>>;
}

export interface AddRepoOptions {
  type?: FakeRepoType;
  private?: boolean;
  branch?: string;
}

export interface FakeHub {
  /** the Hub endpoint (use as HF_ENDPOINT) */
  url: string;
  /** origin of the fake CDN that LFS downloads redirect to */
  cdnUrl: string;
  requests: RecordedRequest[];
  /** create or update a repo with one commit holding exactly `files`; returns the commit sha */
  addRepo(name: string, files: Record<string, string | Uint8Array>, opts?: AddRepoOptions): string;
  /** files of a repo at a branch or commit (undefined when absent) */
  files(name: string, opts?: { type?: FakeRepoType; revision?: string }): Map<string, Buffer> | undefined;
  /** the commit a branch points to */
  head(name: string, opts?: { type?: FakeRepoType; branch?: string }): string | undefined;
  /** from now on, whole-file CDN downloads send half the bytes, pause this long, then the rest (0: at once) */
  setCdnPause(ms: number): void;
  close(): Promise<void>;
}

export interface FakeHubOptions {
  /** the one valid token; requests carrying another Authorization are refused with 401 */
  token?: string;
}

const LFS_NAMES = /\.(safetensors|bin|parquet|onnx|data|gguf)$/;

function gitBlobOid(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

function makeFile(path: string, content: Buffer): FakeFile {
  return { content, lfs: LFS_NAMES.test(path) || content.length > 10 << 20, oid: gitBlobOid(content), sha256: createHash('sha256').update(content).digest('hex') };
}

function newCommitSha(): string {
  return randomBytes(20).toString('hex');
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Serve `content` honouring a single "bytes=a-b" range, like the Hub and its CDN. */
function sendContent(req: http.IncomingMessage, res: http.ServerResponse, content: Buffer, headers: Record<string, string>): void {
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const base = { 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream', ...headers };
  if (range) {
    const start = Number(range[1]);
    const end = Math.min(range[2] ? Number(range[2]) : content.length - 1, content.length - 1);
    if (start >= content.length && content.length > 0) {
      res.writeHead(416, { ...base, 'Content-Range': `bytes */${content.length}` });
      res.end();
      return;
    }
    const part = content.subarray(start, end + 1);
    res.writeHead(206, { ...base, 'Content-Range': `bytes ${start}-${end}/${content.length}`, 'Content-Length': part.length });
    res.end(req.method === 'HEAD' ? undefined : part);
    return;
  }
  res.writeHead(200, { ...base, 'Content-Length': content.length });
  res.end(req.method === 'HEAD' ? undefined : content);
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function startFakeHub(opts: FakeHubOptions = {}): Promise<FakeHub> {
  const repos = new Map<string, FakeRepo>();
  const lfsStore = new Map<string, Buffer>(); // sha256 -> content
  const requests: RecordedRequest[] = [];
  const key = (type: FakeRepoType, name: string) => `${type}/${name}`;
  let url = '';
  let cdnUrl = '';
  let cdnPauseMs = 0;

  const record = (server: 'hub' | 'cdn', req: http.IncomingMessage) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : (v ?? '');
    requests.push({ server, method: req.method ?? '', url: req.url ?? '', headers });
  };

  /** 'ok' for the valid token, 'none' without Authorization, 'bad' for anything else. */
  const auth = (req: http.IncomingMessage): 'ok' | 'none' | 'bad' => {
    const h = req.headers.authorization;
    if (!h) return 'none';
    return opts.token !== undefined && h === `Bearer ${opts.token}` ? 'ok' : 'bad';
  };

  const commitFiles = (repo: FakeRepo, revision: string): { sha: string; files: Map<string, FakeFile> } | undefined => {
    const sha = repo.branches.get(revision) ?? (repo.commits.has(revision) ? revision : undefined);
    return sha ? { sha, files: repo.commits.get(sha)! } : undefined;
  };

  /** Look a repo up as the real Hub does: 401 for bad tokens or private repos without access, 404 when absent. */
  const findRepo = (req: http.IncomingMessage, res: http.ServerResponse, type: FakeRepoType, name: string): FakeRepo | undefined => {
    const a = auth(req);
    if (a === 'bad') {
      sendJson(res, 401, { error: 'Invalid credentials in Authorization header' });
      return undefined;
    }
    const repo = repos.get(key(type, name));
    if (!repo || (repo.private && a !== 'ok')) {
      sendJson(res, repo ? 401 : 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      return undefined;
    }
    return repo;
  };

  const requireWriteAuth = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (auth(req) === 'ok') return true;
    sendJson(res, 401, { error: 'Invalid username or password.' });
    return false;
  };

  const typeOf = (plural: string | undefined): FakeRepoType => (plural === 'datasets' || plural === 'datasets/' ? 'dataset' : 'model');

  const hubHandler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    record('hub', req);
    const u = new URL(req.url ?? '/', url);
    const p = decodeURIComponent(u.pathname);
    let m: RegExpExecArray | null;

    // modelInfo / datasetInfo
    if (req.method === 'GET' && (m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(p))) {
      const repo = findRepo(req, res, typeOf(m[1]), m[2]!);
      if (!repo) return;
      const c = commitFiles(repo, m[3] === 'HEAD' ? 'main' : m[3]!);
      if (!c) return sendJson(res, 404, { error: `Invalid rev id: ${m[3]}` }, { 'X-Error-Code': 'RevisionNotFound' });
      return sendJson(res, 200, {
        _id: createHash('md5').update(repo.name).digest('hex').slice(0, 24),
        id: repo.name,
        sha: c.sha,
        private: repo.private,
        gated: false,
        disabled: false,
        downloads: 0,
        likes: 0,
        lastModified: new Date(0).toISOString(),
        ...(repo.type === 'model' ? { pipeline_tag: 'text-generation' } : {}),
        siblings: [...c.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }

    // pathsInfo
    if (req.method === 'POST' && (m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/paths-info\/(.+)$/.exec(p))) {
      const repo = findRepo(req, res, typeOf(m[1]), m[2]!);
      if (!repo) return;
      const c = commitFiles(repo, m[3]!);
      if (!c) return sendJson(res, 404, { error: `Invalid rev id: ${m[3]}` }, { 'X-Error-Code': 'RevisionNotFound' });
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { paths: string[]; expand?: boolean };
      const out = body.paths
        .filter((path) => c.files.has(path))
        .map((path) => {
          const f = c.files.get(path)!;
          return {
            type: 'file',
            path,
            oid: f.oid,
            size: f.content.length,
            ...(f.lfs ? { lfs: { oid: f.sha256, size: f.content.length, pointerSize: 134 } } : {}),
            ...(body.expand ? { lastCommit: { id: c.sha, title: 'commit', date: new Date(0).toISOString() }, securityFileStatus: { status: 'safe' } } : {}),
          };
        });
      return sendJson(res, 200, out);
    }

    // file download: /{org}/{name}/resolve/{rev}/{path} and /datasets/...
    if ((req.method === 'GET' || req.method === 'HEAD') && (m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p))) {
      const repo = findRepo(req, res, typeOf(m[1]), m[2]!);
      if (!repo) return;
      const c = commitFiles(repo, m[3]!);
      if (!c) return sendJson(res, 404, { error: `Invalid rev id: ${m[3]}` }, { 'X-Error-Code': 'RevisionNotFound' });
      const f = c.files.get(m[4]!);
      if (!f) return sendJson(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
      const common = { 'X-Repo-Commit': c.sha, ETag: `"${f.lfs ? f.sha256 : f.oid}"` };
      if (f.lfs) {
        res.writeHead(302, { ...common, Location: `${cdnUrl}/blob/${f.sha256}`, 'X-Linked-Etag': `"${f.sha256}"`, 'X-Linked-Size': String(f.content.length), 'Content-Length': 0 });
        res.end();
        return;
      }
      return sendContent(req, res, f.content, common);
    }

    // createRepo
    if (req.method === 'POST' && p === '/api/repos/create') {
      if (!requireWriteAuth(req, res)) return;
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { name: string; organization?: string; type?: FakeRepoType; visibility?: string; private?: boolean };
      const type = body.type ?? 'model';
      const name = body.organization ? `${body.organization}/${body.name}` : body.name;
      if (repos.has(key(type, name))) return sendJson(res, 409, { error: `You already created this ${type} repo`, url: `${url}/${name}` });
      const sha = newCommitSha();
      const files = new Map([['.gitattributes', makeFile('.gitattributes', Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'))]]);
      repos.set(key(type, name), { type, name, private: body.visibility === 'private' || body.private === true, branches: new Map([['main', sha]]), commits: new Map([[sha, files]]) });
      return sendJson(res, 200, { url: `${url}/${type === 'dataset' ? 'datasets/' : ''}${name}`, name, id: createHash('md5').update(name).digest('hex').slice(0, 24) });
    }

    // preupload: which files go through LFS
    if (req.method === 'POST' && (m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/preupload\/(.+)$/.exec(p))) {
      if (!requireWriteAuth(req, res)) return;
      if (!findRepo(req, res, typeOf(m[1]), m[2]!)) return;
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { files: { path: string; size: number }[] };
      return sendJson(res, 200, {
        files: body.files.map((f) => ({ path: f.path, uploadMode: LFS_NAMES.test(f.path) || f.size > 10 << 20 ? 'lfs' : 'regular', shouldIgnore: false })),
      });
    }

    // LFS batch API: hand out upload URLs for objects we do not have yet
    if (req.method === 'POST' && (m = /^\/(datasets\/)?([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(p))) {
      if (!requireWriteAuth(req, res)) return;
      if (!findRepo(req, res, typeOf(m[1]), m[2]!)) return;
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { objects: { oid: string; size: number }[] };
      const out = {
        transfer: 'basic',
        objects: body.objects.map((o) => ({
          oid: o.oid,
          size: o.size,
          authenticated: true,
          ...(lfsStore.has(o.oid) ? {} : { actions: { upload: { href: `${url}/lfs-upload/${o.oid}` } } }),
        })),
      };
      const text = JSON.stringify(out);
      res.writeHead(200, { 'Content-Type': 'application/vnd.git-lfs+json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }

    // LFS object upload (a presigned storage URL on the real Hub: no Authorization)
    if (req.method === 'PUT' && (m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(p))) {
      const body = await readBody(req);
      if (createHash('sha256').update(body).digest('hex') !== m[1]) return sendJson(res, 400, { error: 'sha256 mismatch' });
      lfsStore.set(m[1]!, body);
      res.writeHead(200, { 'Content-Length': 0 });
      res.end();
      return;
    }

    // commit (ndjson: header, file, lfsFile, deletedFile)
    if (req.method === 'POST' && (m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/commit\/(.+)$/.exec(p))) {
      if (!requireWriteAuth(req, res)) return;
      const repo = findRepo(req, res, typeOf(m[1]), m[2]!);
      if (!repo) return;
      const branch = m[3]!;
      const parent = commitFiles(repo, branch);
      const files = new Map(parent?.files ?? []);
      const lines = (await readBody(req)).toString('utf8').split('\n').filter((l) => l.trim() !== '');
      for (const line of lines) {
        const { key: k, value } = JSON.parse(line) as { key: string; value: any };
        if (k === 'file') {
          if (value.encoding !== 'base64') return sendJson(res, 400, { error: `unsupported encoding ${value.encoding}` });
          files.set(value.path, makeFile(value.path, Buffer.from(value.content, 'base64')));
        } else if (k === 'lfsFile') {
          const content = lfsStore.get(value.oid);
          if (!content) return sendJson(res, 422, { error: `LFS object ${value.oid} was never uploaded` });
          files.set(value.path, { ...makeFile(value.path, content), lfs: true });
        } else if (k === 'deletedFile') {
          files.delete(value.path);
        } else if (k !== 'header') {
          return sendJson(res, 400, { error: `unknown key ${k}` });
        }
      }
      const sha = newCommitSha();
      repo.commits.set(sha, files);
      repo.branches.set(branch, sha);
      return sendJson(res, 200, { success: true, commitOid: sha, commitUrl: `${url}/${repo.name}/commit/${sha}`, hookOutput: '' });
    }

    sendJson(res, 404, { error: `fake hub: no route for ${req.method} ${p}` });
  };

  const cdnHandler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    record('cdn', req);
    const m = /^\/blob\/([0-9a-f]{64})$/.exec(new URL(req.url ?? '/', cdnUrl).pathname);
    const content = m ? [...repos.values()].flatMap((r) => [...r.commits.values()]).flatMap((f) => [...f.values()]).find((f) => f.sha256 === m[1])?.content : undefined;
    if (!content) {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
      return;
    }
    if (cdnPauseMs > 0 && req.method === 'GET' && !req.headers.range) {
      // a slow transfer: a downloader is mid-file (its .incomplete half written) for cdnPauseMs
      const half = content.length >> 1;
      res.writeHead(200, { 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream', ETag: `"${m![1]}"`, 'Content-Length': content.length });
      res.write(content.subarray(0, half));
      const t = setTimeout(() => res.end(content.subarray(half)), cdnPauseMs);
      res.on('close', () => clearTimeout(t));
      return;
    }
    sendContent(req, res, content, { ETag: `"${m![1]}"` });
  };

  const hub = http.createServer((req, res) => {
    hubHandler(req, res).catch((e) => {
      if (!res.headersSent) sendJson(res, 500, { error: `fake hub: ${(e as Error).message}` });
      else res.destroy();
    });
  });
  const cdn = http.createServer(cdnHandler);
  url = await listen(hub);
  cdnUrl = await listen(cdn);

  return {
    url,
    cdnUrl,
    requests,
    addRepo(name, files, o = {}) {
      const type = o.type ?? 'model';
      const existing = repos.get(key(type, name));
      const repo: FakeRepo = existing ?? { type, name, private: o.private ?? false, branches: new Map(), commits: new Map() };
      if (o.private !== undefined) repo.private = o.private;
      const sha = newCommitSha();
      repo.commits.set(sha, new Map(Object.entries(files).map(([path, c]) => [path, makeFile(path, Buffer.from(c))])));
      repo.branches.set(o.branch ?? 'main', sha);
      repos.set(key(type, name), repo);
      return sha;
    },
    files(name, o = {}) {
      const repo = repos.get(key(o.type ?? 'model', name));
      const c = repo && commitFiles(repo, o.revision ?? 'main');
      return c ? new Map([...c.files].map(([path, f]) => [path, f.content])) : undefined;
    },
    head(name, o = {}) {
      return repos.get(key(o.type ?? 'model', name))?.branches.get(o.branch ?? 'main');
    },
    setCdnPause: (ms: number) => {
      cdnPauseMs = ms;
    },
    close: async () => {
      hub.closeAllConnections();
      cdn.closeAllConnections();
      await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => cdn.close(r))]);
    },
  };
}
