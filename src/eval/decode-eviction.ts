// Eviction while decoding (docs/method.md §6, the public math/method/compression/fastkvzip.py):
// new tokens' attention inputs are buffered and scored by the gates every `interval` tokens;
// then, once a budget group holds more entries than its budget, its lowest-scored entries go.
//
// Entries are (scored layer s, KV head h, position). The prefix never competes; the most recent
// `window` positions are always kept and wait in a queue until they leave it; older kept entries
// sit in one min-heap per budget group (one for "pair", one per layer, one per (layer, head)),
// worst on top, so a round costs O(new entries · log n) rather than a sort of the whole cache.
// Ties break as in EvictionPlan: lower score, then earlier position, then higher layer, higher head
// goes first.
//
// Budget (kept entries of a group outside the window and prefix):
//   "ratio" (default): floor(ratio · tokens · units) − window · units, tokens = context plus
//                      generated so far: the kept fraction stays `ratio` of everything seen;
//   "fixed":           the prefill's final budget (the public decoding code's fixed token budget):
//                      memory stops growing, new tokens displace old ones.
import { floorEps, type EvictionLevel } from './eviction.js';

export type DecodeBudget = 'ratio' | 'fixed';
export const DECODE_BUDGETS: DecodeBudget[] = ['ratio', 'fixed'];

export interface DecodeEvictionOptions {
  ratio: number;
  level: EvictionLevel;
  /** scored layers and KV heads */
  layers: number;
  heads: number;
  /** never-evicted leading tokens */
  prefixLen: number;
  /** always-kept recent tokens */
  window: number;
  budget: DecodeBudget;
}

/** Binary min-heap of (score, position, s·H + h), worst entry on top. */
class EntryHeap {
  private score = new Float32Array(1024);
  private pos = new Int32Array(1024);
  private sh = new Int32Array(1024);
  size = 0;

  private worse(a: number, b: number): boolean {
    const sa = this.score[a]!;
    const sb = this.score[b]!;
    if (sa !== sb) return sa < sb;
    if (this.pos[a] !== this.pos[b]) return this.pos[a]! < this.pos[b]!;
    return this.sh[a]! > this.sh[b]!;
  }

  private swap(a: number, b: number): void {
    const s = this.score[a]!;
    this.score[a] = this.score[b]!;
    this.score[b] = s;
    const p = this.pos[a]!;
    this.pos[a] = this.pos[b]!;
    this.pos[b] = p;
    const k = this.sh[a]!;
    this.sh[a] = this.sh[b]!;
    this.sh[b] = k;
  }

  push(score: number, pos: number, sh: number): void {
    if (this.size === this.score.length) {
      const grow = <T extends Float32Array | Int32Array>(x: T): T => {
        const n = new (x.constructor as new (n: number) => T)(x.length * 2);
        n.set(x);
        return n;
      };
      this.score = grow(this.score);
      this.pos = grow(this.pos);
      this.sh = grow(this.sh);
    }
    let i = this.size++;
    this.score[i] = Number.isNaN(score) ? -Infinity : score;
    this.pos[i] = pos;
    this.sh[i] = sh;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.worse(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** remove the worst entry: [position, s·H + h] */
  pop(): [number, number] {
    const top: [number, number] = [this.pos[0]!, this.sh[0]!];
    const last = --this.size;
    if (last > 0) {
      this.score[0] = this.score[last]!;
      this.pos[0] = this.pos[last]!;
      this.sh[0] = this.sh[last]!;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < last && this.worse(l, m)) m = l;
        if (r < last && this.worse(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

export class DecodeEviction {
  private readonly heaps: EntryHeap[];
  /** scored entries still inside the recent window, in position order */
  private qPos: number[] = [];
  private qSh: number[] = [];
  private qScore: number[] = [];
  private qHead = 0;
  private readonly units: number;
  private fixedBudget: number | null = null;
  /** entries evicted by rounds so far */
  evicted = 0;

  constructor(private readonly o: DecodeEvictionOptions) {
    this.units = o.level === 'pair' ? o.layers * o.heads : o.level === 'layer' ? o.heads : 1;
    const groups = o.level === 'pair' ? 1 : o.level === 'layer' ? o.layers : o.layers * o.heads;
    this.heaps = Array.from({ length: groups }, () => new EntryHeap());
  }

  private group(sh: number): number {
    if (this.o.level === 'pair') return 0;
    return this.o.level === 'layer' ? Math.floor(sh / this.o.heads) : sh;
  }

  /** A kept entry and its gate score (call in position order). */
  add(s: number, h: number, pos: number, score: number): void {
    if (pos < this.o.prefixLen || this.o.ratio >= 1) return;
    this.qPos.push(pos);
    this.qSh.push(s * this.o.heads + h);
    this.qScore.push(score);
  }

  /** kept entries allowed per group outside the window and prefix, with `tokens` positions seen */
  budget(tokens: number): number {
    const ctx = Math.max(0, tokens - this.o.prefixLen);
    const byRatio = Math.max(0, floorEps(this.o.ratio * ctx * this.units) - this.o.window * this.units);
    if (this.o.budget === 'ratio') return byRatio;
    this.fixedBudget ??= byRatio; // the first round (right after prefill) fixes it
    return this.fixedBudget;
  }

  /**
   * After `tokens` positions: move entries that left the window into their heaps, then evict each
   * group down to its budget. Returns the entries to evict: [s, h, pos].
   */
  round(tokens: number): [number, number, number][] {
    if (this.o.ratio >= 1) return [];
    const edge = tokens - this.o.window;
    while (this.qHead < this.qPos.length && this.qPos[this.qHead]! < edge) {
      const sh = this.qSh[this.qHead]!;
      this.heaps[this.group(sh)]!.push(this.qScore[this.qHead]!, this.qPos[this.qHead]!, sh);
      this.qHead++;
    }
    if (this.qHead > 4096 && this.qHead * 2 > this.qPos.length) {
      this.qPos = this.qPos.slice(this.qHead);
      this.qSh = this.qSh.slice(this.qHead);
      this.qScore = this.qScore.slice(this.qHead);
      this.qHead = 0;
    }
    const allowed = this.budget(tokens);
    const out: [number, number, number][] = [];
    for (const heap of this.heaps) {
      while (heap.size > allowed) {
        const [pos, sh] = heap.pop();
        out.push([Math.floor(sh / this.o.heads), sh % this.o.heads, pos]);
      }
    }
    this.evicted += out.length;
    return out;
  }
}
