// Secrets must never reach a terminal, a log or a file: hub error bodies can echo the request
// ("... you sent Bearer hf_..."), so every message we print goes through redact() first.

/** Hugging Face user/org tokens: "hf_" and 30+ letters/digits (the real ones have 34). */
const HF_TOKEN_PATTERN = /\bhf_[A-Za-z0-9]{20,}/g;
/** Any bearer credential echoed back, whatever its shape. */
const BEARER_PATTERN = /(Bearer\s+)[^\s"',;]+/gi;
export const REDACTED = '[REDACTED]';

const known = new Set<string>();

/** Remember a secret (e.g. the HF token in use) so that redact() removes it verbatim too. */
export function registerSecret(secret: string | undefined): void {
  if (secret && secret.length >= 4) known.add(secret);
}

export function redact(text: string): string {
  let out = text;
  for (const s of known) out = out.split(s).join(REDACTED);
  for (const v of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const s = process.env[v]?.trim();
    if (s && s.length >= 4) out = out.split(s).join(REDACTED);
  }
  return out.replace(BEARER_PATTERN, `$1${REDACTED}`).replace(HF_TOKEN_PATTERN, REDACTED);
}
