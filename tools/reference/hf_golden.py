"""Tiny random-weight HF models (one per family), their golden outputs, and KVzip golden scores.

Needs transformers (v5 API; v4.5x tolerated), tokenizers. CPU, fp32, eager attention.
"""
import contextlib
import copy
import json
import os
import sys

import torch
import transformers

import st_io
from kvzip_ref import (causal_probs, chunk_scores, inv_freq_default, inv_freq_linear, inv_freq_llama3,
                       repeat_plan, rope_cos)

V5 = int(transformers.__version__.split(".")[0]) >= 5
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"
VOCAB_SIZE = 320

# Tokenizer training text (written for this fixture).
CORPUS = """The old lighthouse stood at the end of the harbour wall. Every evening the keeper climbed the
narrow stairs, trimmed the wick, and wound the clockwork that turned the great lens. Ships far out at sea
saw the beam sweep across the water and knew where the rocks were hidden.

Rivers carry more than water. They move sand and stones from the mountains to the sea, they cut valleys
into hard rock, and they build wide plains where farmers grow wheat and barley. A river that floods in
spring leaves rich soil behind when the water falls again in summer.

To bake a simple loaf of bread, mix flour, water, salt and a little yeast. Knead the dough until it is
smooth, let it rise in a warm place, shape it, and let it rise once more. Bake it in a hot oven until the
crust is brown and the loaf sounds hollow when you tap it.

Given the context, answer to the following question or request without explanation. Repeat the previous
context exactly. Repeat the part of the previous context exactly, starting with the words that came before.
The assistant reads the context, the user asks a question, and the system keeps the answer short.

Numbers help us describe the world: one, two, three, four, five, six, seven, eight, nine and ten. A
careful student writes each step of a calculation, checks the result, and explains what it means in plain
words so that others can follow the reasoning from the first line to the last."""

PROMPT_TEXT = ("The keeper climbed the narrow stairs and wound the clockwork, while ships far out at sea "
               "watched the beam sweep across the water.")
PROMPT_LEN, PROMPT_SPLIT, GREEDY_NEW = 24, 15, 8

KV_PREFIX_TEXT = "<|im_start|>user\nThe"
KV_CTX_TEXT = ("A river that floods in spring leaves rich soil behind. Farmers grow wheat and barley on the "
               "wide plains, and the water moves sand and stones from the mountains down to the sea, cutting "
               "valleys into hard rock as it goes.")
KV_CTX_LEN = 50
KV_REPEAT_FIRST_TEXT = "\n\nRepeat the previous context exactly."
KV_REPEAT_NEXT_TEXT = "\n\nRepeat the part of the previous context exactly, starting with "
KV_POSTFIX_TEXT = "<|im_end|>\n<|im_start|>"
PREFILL_CHUNK, SCORE_CHUNK, PREV_POSTFIX_TOKENS = 16, 12, 8

TOL_CHUNKED = 2e-5      # chunked vs one-shot (logits, attention inputs, keys)
TOL_ATTN = 1e-5         # recorded queries/keys reproduce the model's own attention probabilities


def fail(msg):
    raise RuntimeError(f"[reference] assumption broken: {msg}")


# ---------------------------------------------------------------- tokenizer
def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.split("\n\n"), trainer=trainer)
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:
            fail(f"special token {s} got id {tok.token_to_id(s)}, expected {i}")
    return tok


def save_tokenizer(tok, d):
    tok.save(os.path.join(d, "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
           "pad_token": PAD, "add_bos_token": False, "add_eos_token": False,
           "clean_up_tokenization_spaces": False, "model_max_length": 256}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def encode(tok, text):
    return tok.encode(text).ids


# ---------------------------------------------------------------- model specs
def rope_kwargs(theta, scaling=None, local_theta=None):
    """RoPE config kwargs: v5 `rope_parameters` (per layer type for Gemma3), else v4 fields."""
    if V5:
        full = {"rope_type": "default", "rope_theta": theta, **(scaling or {})}
        if local_theta is None:
            return {"rope_parameters": full}
        return {"rope_parameters": {"full_attention": full,
                                    "sliding_attention": {"rope_type": "default", "rope_theta": local_theta}}}
    kw = {"rope_theta": theta, "rope_scaling": scaling}
    if local_theta is not None:
        kw["rope_local_base_freq"] = local_theta
    return kw


LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32}
GEMMA_LAYER_TYPES = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
                     "full_attention"]


def specs():
    """name -> config class, architecture, seed (picked so greedy continuations vary), config kwargs,
    expected RoPE inv_freq per layer, scored layers, expected attention scaling."""
    llama_inv = inv_freq_llama3(10000.0, 16, 8.0, 1.0, 4.0, 32)
    return {
        "llama": dict(config="LlamaConfig", arch="LlamaForCausalLM", gemma=False, seed=100, kwargs=dict(
            hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=False,
            **rope_kwargs(10000.0, dict(LLAMA3_ROPE))),
            inv_freq=[llama_inv] * 3, scored=[0, 1, 2], scaling=16 ** -0.5),
        "qwen2": dict(config="Qwen2Config", arch="Qwen2ForCausalLM", gemma=False, seed=101, kwargs=dict(
            hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
            **rope_kwargs(1e6)),
            inv_freq=[inv_freq_default(1e6, 16)] * 3, scored=[0, 1, 2], scaling=16 ** -0.5),
        "qwen3": dict(config="Qwen3Config", arch="Qwen3ForCausalLM", gemma=False, seed=114, kwargs=dict(
            hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=True,
            use_sliding_window=False, **rope_kwargs(1e6)),
            inv_freq=[inv_freq_default(1e6, 16)] * 3, scored=[0, 1, 2], scaling=16 ** -0.5),
        # Gemma multiplies embeddings by sqrt(D) = 8: embedding std 0.03 keeps them near the others' scale
        "gemma3": dict(config="Gemma3TextConfig", arch="Gemma3ForCausalLM", gemma=True, seed=109, embed_std=0.03,
                       kwargs=dict(
            hidden_size=64, intermediate_size=96, num_hidden_layers=5, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=True,
            layer_types=list(GEMMA_LAYER_TYPES), sliding_window=6, query_pre_attn_scalar=24,
            hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=None, attn_logit_softcapping=None,
            **rope_kwargs(1e6, {"rope_type": "linear", "factor": 8.0}, local_theta=10000.0)),
            inv_freq=[inv_freq_default(10000.0, 16) if t == "sliding_attention" else inv_freq_linear(1e6, 16, 8.0)
                      for t in GEMMA_LAYER_TYPES],
            scored=[1, 4], scaling=24 ** -0.5),
    }


def build_model(name, spec, vocab):
    cfg_cls = getattr(transformers, spec["config"])
    config = cfg_cls(vocab_size=vocab, max_position_embeddings=256, bos_token_id=0, eos_token_id=2,
                     pad_token_id=0, **spec["kwargs"])
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    if type(model).__name__ != spec["arch"]:
        fail(f"{name}: AutoModelForCausalLM built {type(model).__name__}, expected {spec['arch']}")
    if model.config._attn_implementation != "eager":
        fail(f"{name}: attention implementation is {model.config._attn_implementation!r}, expected 'eager'")
    if getattr(model.config, "layer_types", None) is not None and spec["gemma"]:
        if list(model.config.layer_types) != GEMMA_LAYER_TYPES:
            fail(f"{name}: layer_types {model.config.layer_types} != {GEMMA_LAYER_TYPES}")
    model = model.float().eval()
    reinit(model, spec["seed"], spec["gemma"], spec.get("embed_std"))
    if spec["kwargs"]["tie_word_embeddings"]:
        if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
            fail(f"{name}: tie_word_embeddings=True but lm_head is not tied to embed_tokens")
    elif model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr():
        fail(f"{name}: tie_word_embeddings=False but lm_head is tied")
    return model


def reinit(model, seed, gemma, embed_std=None):
    """Seeded re-init so attention is far from uniform: matrices N(0,.15²), biases N(0,.1²),
    norms 1+N(0,.1²) (Gemma's (1+w) norms: N(0,.1²)); optionally the embedding redrawn with embed_std."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied weights are listed once
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                p.copy_(0.15 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif "norm" in name:
                p.copy_(0.1 * noise if gemma else 1 + 0.1 * noise)
            else:
                fail(f"unexpected parameter {name} {tuple(p.shape)}")
        if embed_std is not None:
            emb = model.model.embed_tokens.weight
            emb.copy_(embed_std * torch.randn(emb.shape, generator=torch.Generator().manual_seed(seed + 999)))


# ---------------------------------------------------------------- capture helpers
@contextlib.contextmanager
def record_attn_inputs(model, layers):
    """Per layer, the outputs of input_layernorm (= the attention input), one entry per forward."""
    store = {l: [] for l in layers}
    hooks = [model.model.layers[l].input_layernorm.register_forward_hook(
        lambda m, i, o, l=l: store[l].append(o.detach()[0].clone())) for l in layers]
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()


@contextlib.contextmanager
def record_rope(model):
    """Wrap the modeling module's apply_rotary_pos_emb; record (q, k, cos) after RoPE, in call order."""
    mod = sys.modules[getattr(model, "rope_module", type(model).__module__)]
    orig = getattr(mod, "apply_rotary_pos_emb", None)
    if orig is None:
        fail(f"{mod.__name__} has no apply_rotary_pos_emb to wrap")
    calls = []

    def wrapped(q, k, cos, sin, *args, **kwargs):
        q_out, k_out = orig(q, k, cos, sin, *args, **kwargs)
        calls.append((q_out.detach().clone(), k_out.detach().clone(), cos.detach().clone()))
        return q_out, k_out

    mod.apply_rotary_pos_emb = wrapped
    try:
        yield calls
    finally:
        mod.apply_rotary_pos_emb = orig


def cache_keys(cache, layer):
    """Post-RoPE keys [1, H, T, d] of one layer, for the v5 (layers[l].keys) and older cache APIs."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys
    if hasattr(cache, "key_cache"):
        return cache.key_cache[layer]
    return cache[layer][0]


def forward(model, ids, past=None, start=0, **kw):
    """Run ids at positions start..start+len-1, attending to `past` (which must hold `start` tokens)."""
    if past is not None and past.get_seq_length() != start:
        fail(f"cache holds {past.get_seq_length()} tokens, expected {start}")
    pos = torch.arange(start, start + len(ids)).unsqueeze(0)
    return model(input_ids=torch.tensor([ids]), position_ids=pos, past_key_values=past, use_cache=True, **kw)


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def check(name, what, diff, tol):
    if not diff < tol:
        fail(f"{name}: {what} differ by {diff:.3g} (tolerance {tol:g})")


# ---------------------------------------------------------------- part A: model golden
def model_golden(name, model, spec, ids):
    L, T = model.config.num_hidden_layers, len(ids)
    d = spec["kwargs"].get("head_dim", model.config.hidden_size // model.config.num_attention_heads)
    with torch.no_grad():
        with record_attn_inputs(model, range(L)) as one_in, record_rope(model) as rope_one:
            one = forward(model, ids)
        with record_attn_inputs(model, range(L)) as ch_in, record_rope(model) as rope_ch:
            a = forward(model, ids[:PROMPT_SPLIT])
            b = forward(model, ids[PROMPT_SPLIT:], past=a.past_key_values, start=PROMPT_SPLIT)
    if len(rope_one) != L or len(rope_ch) != 2 * L:
        fail(f"{name}: apply_rotary_pos_emb wrapper saw {len(rope_one)}/{len(rope_ch)} calls, expected {L}/{2 * L}")
    # RoPE tables the model used == our own frequencies (catches silently ignored rope settings)
    for l in range(L):
        for cos, positions in ((rope_one[l][2], torch.arange(T)), (rope_ch[L + l][2], torch.arange(PROMPT_SPLIT, T))):
            check(name, f"layer {l} RoPE cos table vs expected", max_diff(cos.reshape(-1, d),
                  rope_cos(spec["inv_freq"][l], positions) * spec.get("rope_scale", 1.0)), 1e-5)
    logits = torch.cat([a.logits[0], b.logits[0]])
    diff_logits = max_diff(logits, one.logits[0])
    check(name, "chunked vs one-shot logits", diff_logits, TOL_CHUNKED)
    attn_in = {}
    for l in range(L):
        attn_in[l] = torch.cat(ch_in[l])
        check(name, f"chunked vs one-shot attention input of layer {l}", max_diff(attn_in[l], one_in[l][0]), TOL_CHUNKED)
    greedy, margins = [], []
    with torch.no_grad():
        out = forward(model, ids)
        past, nxt = out.past_key_values, out.logits[0, -1]
        for k in range(GREEDY_NEW):
            top = nxt.topk(2)
            greedy.append(int(top.indices[0]))
            margins.append((top.values[0] - top.values[1]).item())
            if k + 1 < GREEDY_NEW:
                nxt = forward(model, [greedy[-1]], past=past, start=T + k).logits[0, -1]
    tensors = {"input_ids": torch.tensor(ids, dtype=torch.int64), "logits": logits.float(),
               "greedy_ids": torch.tensor(greedy, dtype=torch.int64)}
    tensors.update({f"attn_input.{l}": attn_in[l].float() for l in range(L)})
    meta = {"T": T, "split": PROMPT_SPLIT, "greedy_new_tokens": GREEDY_NEW,
            "greedy_min_top2_margin": min(margins), "chunked_vs_oneshot_max_abs": diff_logits}
    if min(margins) < 1e-3:
        print(f"WARNING {name}: greedy top-2 logit margin {min(margins):.2e} is tiny; ports may pick another token")
    return tensors, meta


# ---------------------------------------------------------------- part B: KVzip golden
def kvzip_golden(name, model, spec, kv_ids, prefill_chunk=PREFILL_CHUNK, score_chunk=SCORE_CHUNK, texts=None):
    prefix, ctx = kv_ids["prefix"], kv_ids["ctx"]
    prefill = prefix + ctx
    P, N, L = len(prefix), len(prefill), model.config.num_hidden_layers
    scored = spec["scored"]
    with torch.no_grad():
        past = None
        with record_attn_inputs(model, scored) as rec:
            for s in range(0, N, prefill_chunk):
                past = forward(model, prefill[s:s + prefill_chunk], past=past, start=s).past_key_values
        with record_attn_inputs(model, scored) as rec_one:
            one = forward(model, prefill)
        hidden = torch.stack([torch.cat(rec[l])[P:] for l in scored])  # [L_s, ctx_len, D]
        ctx_keys = {l: cache_keys(past, l)[0].clone() for l in scored}  # [H, N, d]
        for i, l in enumerate(scored):
            check(name, f"prefill chunked vs one-shot attention input (layer {l})", max_diff(hidden[i], rec_one[l][0][P:]), TOL_CHUNKED)
            check(name, f"prefill chunked vs one-shot keys (layer {l})", max_diff(ctx_keys[l], cache_keys(one.past_key_values, l)[0]), TOL_CHUNKED)
            if ctx_keys[l].shape[1] != N:
                fail(f"{name}: layer {l} cache holds {ctx_keys[l].shape[1]} keys after prefill, expected {N}")

        plan = repeat_plan(ctx, score_chunk, kv_ids["repeat_first"], kv_ids["repeat_next"], kv_ids["postfix"],
                           PREV_POSTFIX_TOKENS)
        per_layer = {l: [] for l in scored}
        attn_check = 0.0
        sensitivity = 0.0
        for start, end, rep in plan:
            R = len(rep)
            cache = copy.deepcopy(past)  # the repeat KV is dropped with this copy
            with record_rope(model) as calls:
                out = forward(model, rep, past=cache, start=N, output_attentions=True)
            if len(calls) != L:
                fail(f"{name}: apply_rotary_pos_emb wrapper saw {len(calls)} calls in one forward, expected {L}")
            if out.attentions is None or len(out.attentions) != L:
                fail(f"{name}: output_attentions=True returned no per-layer attention weights")
            for l in scored:
                q, k = calls[l][0][0], calls[l][1][0]  # [Hq, R, d], [H, R, d]
                if q.shape[1] != R or k.shape[1] != R:
                    fail(f"{name}: recorded q/k shapes {tuple(q.shape)}/{tuple(k.shape)}, expected [*, {R}, d]")
                k_all = cache_keys(cache, l)[0]
                if k_all.shape[1] != N + R:
                    fail(f"{name}: layer {l} cache holds {k_all.shape[1]} keys after the repeat, expected {N + R}")
                check(name, f"recorded repeat keys vs cache (layer {l})", max_diff(k_all[:, N:], k), 1e-6)
                check(name, f"context keys in the copied cache (layer {l})", max_diff(k_all[:, :N], ctx_keys[l]), 1e-6)
                scaling = model.model.layers[l].self_attn.scaling
                if abs(scaling - spec["scaling"]) > 1e-9:
                    fail(f"{name}: layer {l} attention scaling {scaling}, expected {spec['scaling']}")
                diff = max_diff(causal_probs(q, k_all, scaling), out.attentions[l][0])
                check(name, f"recorded q/k reproduce the model's attention (layer {l})", diff, TOL_ATTN)
                # the check must be able to fail: 1 % larger queries must move some probability
                # (a saturated layer may not; over all layers and chunks, some must)
                sensitivity = max(sensitivity, max_diff(causal_probs(q * 1.01, k_all, scaling), out.attentions[l][0]))
                attn_check = max(attn_check, diff)
                per_layer[l].append(chunk_scores(q, ctx_keys[l][:, :P], ctx_keys[l][:, P + start:P + end], k))
        if sensitivity < 100 * TOL_ATTN:
            fail(f"{name}: attention check is insensitive (perturbed queries still match, {sensitivity:.2g})")
        if past.get_seq_length() != N:
            fail(f"{name}: context cache grew to {past.get_seq_length()} tokens during the repeat passes")
    scores = torch.stack([torch.cat(per_layer[l], dim=1) for l in scored])  # [L_s, H, ctx_len]
    tensors = {"kvzip.hidden": hidden.float(), "kvzip.scores": scores.float()}
    for key in ("prefix", "ctx", "repeat_first", "repeat_next", "postfix"):
        tensors[f"kvzip.{key}_ids"] = torch.tensor(kv_ids[key], dtype=torch.int64)
    for i, (_, _, rep) in enumerate(plan):
        tensors[f"kvzip.repeat_input.{i}"] = torch.tensor(rep, dtype=torch.int64)
    meta = {"prefill_chunk": prefill_chunk, "score_chunk": score_chunk, "prev_postfix_tokens": PREV_POSTFIX_TOKENS,
            "scored_layers": scored, "prefix_len": P, "ctx_len": len(ctx), "prefill_len": N,
            "chunks": [{"start": s, "end": e, "repeat_len": len(r)} for s, e, r in plan],
            "score_scale": "1/sqrt(head_dim)", "softmax_dtype": "float32",
            "attention_check_max_abs": attn_check, "attention_check_sensitivity": sensitivity,
            "texts": texts or {"prefix": KV_PREFIX_TEXT, "ctx": KV_CTX_TEXT, "repeat_first": KV_REPEAT_FIRST_TEXT,
                                "repeat_next": KV_REPEAT_NEXT_TEXT, "postfix": KV_POSTFIX_TEXT}}
    return tensors, meta


# ---------------------------------------------------------------- driver
def save_model(model, d):
    try:
        model.save_pretrained(d, safe_serialization=True)
    except TypeError:  # newer versions always write safetensors and dropped the flag
        model.save_pretrained(d)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        fail(f"save_pretrained wrote no model.safetensors in {d}: {sorted(os.listdir(d))}")


def check_reload(name, model, d, ids, tok):
    """The saved folder loads back (config, tied weights, tokenizer) and gives the same logits."""
    loaded = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").float().eval()
    with torch.no_grad():
        diff = max_diff(forward(loaded, ids).logits, forward(model, ids).logits)
    check(name, "reloaded vs in-memory logits", diff, 1e-6)
    hf_tok = transformers.AutoTokenizer.from_pretrained(d)
    got = hf_tok(PROMPT_TEXT, add_special_tokens=True)["input_ids"]
    if got != encode(tok, PROMPT_TEXT):
        fail(f"{name}: AutoTokenizer ids {got[:8]}... differ from tokenizers ids {encode(tok, PROMPT_TEXT)[:8]}...")
    return diff


def make(out_dir, only=None):
    torch.manual_seed(0)
    tok = train_tokenizer()
    vocab = tok.get_vocab_size()
    prompt = encode(tok, PROMPT_TEXT)[:PROMPT_LEN]
    if len(prompt) != PROMPT_LEN:
        fail(f"prompt text gives only {len(prompt)} tokens, need {PROMPT_LEN}")
    kv_ids = {"prefix": encode(tok, KV_PREFIX_TEXT), "ctx": encode(tok, KV_CTX_TEXT)[:KV_CTX_LEN],
              "repeat_first": encode(tok, KV_REPEAT_FIRST_TEXT), "repeat_next": encode(tok, KV_REPEAT_NEXT_TEXT),
              "postfix": encode(tok, KV_POSTFIX_TEXT)}
    if len(kv_ids["ctx"]) != KV_CTX_LEN:
        fail(f"context text gives only {len(kv_ids['ctx'])} tokens, need {KV_CTX_LEN}")
    os.makedirs(os.path.join(out_dir, "golden"), exist_ok=True)
    for name, spec in specs().items():
        if only and name not in only:
            continue
        model = build_model(name, spec, vocab)
        d = os.path.join(out_dir, "models", name)
        os.makedirs(d, exist_ok=True)
        save_model(model, d)
        save_tokenizer(tok, d)
        reload_diff = check_reload(name, model, d, prompt, tok)
        t_a, m_a = model_golden(name, model, spec, prompt)
        t_b, m_b = kvzip_golden(name, model, spec, kv_ids)
        cfg = model.config
        meta = {"name": name, "model_dir": f"models/{name}", "architecture": spec["arch"], "dtype": "float32",
                "seed": spec["seed"], "vocab_size": vocab, "num_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                "num_heads": cfg.num_attention_heads, "num_kv_heads": cfg.num_key_value_heads,
                "head_dim": spec["kwargs"].get("head_dim", cfg.hidden_size // cfg.num_attention_heads),
                "layer_types": list(getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers),
                "prompt_text": PROMPT_TEXT, "reload_max_abs": reload_diff, **m_a, "kvzip": m_b,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "tokenizers": __import__("tokenizers").__version__}}
        st_io.save(os.path.join(out_dir, "golden", f"{name}.safetensors"), {**t_a, **t_b})
        with open(os.path.join(out_dir, "golden", f"{name}.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"{name}: T={len(prompt)} V={vocab} greedy={t_a['greedy_ids'].tolist()} "
              f"chunked-diff={m_a['chunked_vs_oneshot_max_abs']:.2e} attn-check={m_b['attention_check_max_abs']:.2e} "
              f"scores[min,max]=[{t_b['kvzip.scores'].min():.3g},{t_b['kvzip.scores'].max():.3g}] "
              f"repeat lens={[c['repeat_len'] for c in m_b['chunks']]}")
