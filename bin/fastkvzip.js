#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm ci` through the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli/index.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  console.error('fastkvzip: dist/ is missing; run `npm run build` (npm ci does it through `prepare`).');
  process.exit(1);
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);
