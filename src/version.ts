// The tool's version, recorded in manifests and model cards.
import { readFileSync } from 'node:fs';

export const TOOL_NAME = 'fastkvzip';
export const TOOL_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
