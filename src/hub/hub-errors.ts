// Turn @huggingface/hub failures into one-line UserErrors that name the repo (and never the token).
import { HubApiError } from '@huggingface/hub';
import { UserError } from '../util/errors.js';
import type { HubEnv } from './env.js';
import { redact } from '../util/redact.js';

const NETWORK_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/** fetch() could not talk to the server at all (DNS, refused, reset, timeout). */
export function isNetworkError(e: unknown): boolean {
  if (e instanceof HubApiError) return false;
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string } };
  if (err?.name === 'TypeError' && err.message === 'fetch failed') return true;
  return NETWORK_CODES.has(err?.code ?? '') || NETWORK_CODES.has(err?.cause?.code ?? '');
}

export function networkReason(e: unknown, env: HubEnv): string {
  const code = (e as { cause?: { code?: string } })?.cause?.code ?? (e as { code?: string })?.code;
  return `cannot reach ${env.endpoint}${code ? ` (${code})` : ''}`;
}

/** `what` names the repo (e.g. "Qwen/Qwen3-8B" or "dataset HuggingFaceFW/fineweb-edu"). */
export function hubError(e: unknown, what: string, env: HubEnv): Error {
  if (e instanceof UserError) return new UserError(redact(e.message), e.exitCode);
  if (e instanceof HubApiError) {
    const code = (e.data as { error?: string } | undefined)?.error ?? '';
    const auth = env.tokenSource ? `the token from ${env.tokenSource} may lack access` : 'set HF_TOKEN if it is private or gated';
    if (e.statusCode === 401 || (e.statusCode === 404 && /repository not found/i.test(`${code} ${e.message}`))) {
      return new UserError(`${what}: repository not found on ${env.endpoint} (${auth})`);
    }
    if (e.statusCode === 403) return new UserError(`${what}: access denied by ${env.endpoint} (gated? accept its terms on the Hub; ${auth})`);
    if (e.statusCode === 404) return new UserError(`${what}: not found on ${env.endpoint}: ${e.message.split('. URL:')[0]}`);
    return new UserError(redact(`${what}: Hub request failed with status ${e.statusCode}: ${e.message.replace(/\s+/g, ' ')}`), 1);
  }
  if (isNetworkError(e)) return new UserError(`${what}: ${networkReason(e, env)}`, 1);
  // local file-system failures (cache writes) keep their own error; main() words them
  if (e instanceof Error && typeof (e as NodeJS.ErrnoException).syscall === 'string') return e;
  // Anything else thrown while talking to the Hub is a reply the client library could not make
  // sense of (not JSON, fields missing): the server's fault, not a bug of ours.
  const msg = e instanceof Error ? e.message : String(e);
  return new UserError(redact(`${what}: unexpected response from ${env.endpoint} (${msg.split('\n')[0]!.slice(0, 200)})`), 1);
}

/** @huggingface/hub insists on tokens that start with "hf_"; say so without showing the token. */
export function credentials(env: HubEnv): { accessToken?: string } {
  const token = env.token;
  if (!token) return {};
  if (!token.startsWith('hf_')) throw new UserError(`${env.tokenSource}: the Hugging Face token must start with "hf_"`);
  return { accessToken: token };
}
