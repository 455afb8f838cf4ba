// The environment variables Python's huggingface_hub honours, resolved the same way, because
// @huggingface/hub reads none of them. The token is kept off enumerable properties so that
// logging or serialising a HubEnv cannot leak it.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { registerSecret } from '../util/redact.js';

export interface HubEnv {
  /** HF_ENDPOINT without a trailing slash (default https://huggingface.co) */
  endpoint: string;
  /** HF_HUB_OFFLINE is 1/true/yes/on */
  offline: boolean;
  /** HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub */
  cacheDir: string;
  /** 'HF_TOKEN' or the token file's path when a token was found, else null (never the token itself) */
  tokenSource: string | null;
  /** the token (non-enumerable: absent from JSON.stringify, console.log and spreads) */
  readonly token: string | undefined;
}

const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);
const nonEmpty = (v: string | undefined): string | undefined => (v && v.trim() !== '' ? v : undefined);

export function hubEnv(env: NodeJS.ProcessEnv = process.env): HubEnv {
  const home = nonEmpty(env.HOME) ?? homedir();
  const hfHome = nonEmpty(env.HF_HOME) ?? path.join(nonEmpty(env.XDG_CACHE_HOME) ?? path.join(home, '.cache'), 'huggingface');
  const cacheDir = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE) ?? path.join(hfHome, 'hub');
  const endpoint = (nonEmpty(env.HF_ENDPOINT) ?? 'https://huggingface.co').replace(/\/+$/, '');
  const offline = TRUE_VALUES.has((env.HF_HUB_OFFLINE ?? '').trim().toUpperCase());

  let token: string | undefined;
  let tokenSource: string | null = null;
  const fromEnv = nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN);
  if (fromEnv) {
    token = fromEnv.trim();
    tokenSource = nonEmpty(env.HF_TOKEN) ? 'HF_TOKEN' : 'HUGGING_FACE_HUB_TOKEN';
  } else {
    const tokenFile = nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome, 'token');
    try {
      const t = readFileSync(tokenFile, 'utf8').trim();
      if (t) {
        token = t;
        tokenSource = tokenFile;
      }
    } catch {
      // no token file: anonymous access
    }
  }
  registerSecret(token);
  const out = { endpoint, offline, cacheDir, tokenSource } as HubEnv;
  Object.defineProperty(out, 'token', { value: token, enumerable: false });
  return out;
}
