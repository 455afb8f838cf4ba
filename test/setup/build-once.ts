// The CLI tests spawn bin/fastkvzip.js, which runs dist/. Build it once, before any test file
// starts: files that each ran tsc rewrote dist/ while other files' CLIs were importing it, and a
// half-written module failed CI ("does not provide an export named ...").
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const r = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc failed: ${r.stdout}${r.stderr}`);
}
