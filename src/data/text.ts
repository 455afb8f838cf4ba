// Text screening shared by every source: strict UTF-8, Python-compatible strip, blank check.
import type { Document, DocumentStreamOptions } from './types.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Decode UTF-8 bytes, or undefined when they are not valid UTF-8. A leading BOM is dropped. */
export function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** JSON escapes can produce lone surrogates, which have no UTF-8 form. */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

// Python's str.isspace() set, which str.strip() removes. JS trim() differs: it also strips
// U+FEFF and keeps U+001C..U+001F and U+0085, so the public recipe's `.strip()` is mirrored here.
const PY_SPACE = '\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const PY_SPACE_SET = new Set(PY_SPACE);

/** Python `str.strip()` with no arguments. */
export function pythonStrip(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && PY_SPACE_SET.has(text[start])) start++;
  while (end > start && PY_SPACE_SET.has(text[end - 1])) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

export function isBlank(text: string): boolean {
  return pythonStrip(text).length === 0;
}

/**
 * Screen one document: text that is missing, not UTF-8 or blank is reported through onSkip
 * and undefined is returned; otherwise the document.
 */
export function admitDocument(
  id: string,
  raw: string | Uint8Array | null | undefined,
  tokenCount: number | undefined,
  options: DocumentStreamOptions | undefined,
): Document | undefined {
  if (raw === null || raw === undefined) {
    options?.onSkip?.({ id, reason: 'null-text' });
    return undefined;
  }
  const text = typeof raw === 'string' ? raw : decodeUtf8Strict(raw);
  if (text === undefined || hasLoneSurrogate(text)) {
    options?.onSkip?.({ id, reason: 'invalid-utf8' });
    return undefined;
  }
  if (isBlank(text)) {
    options?.onSkip?.({ id, reason: 'empty' });
    return undefined;
  }
  return tokenCount === undefined ? { id, text } : { id, text, tokenCount };
}

/** Locale-independent string order (what `sort()` does), usable as a comparator. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
