"""Real checkpoint layouts (part D) and the CLI goldens (part E).

Part D: one tiny random-weight model per target checkpoint, laid out as the hub checkpoint is:
bf16 weights saved by transformers' own classes with a small max_shard_size (several
model-0000k-of-0000n.safetensors + model.safetensors.index.json), and the checkpoint's own
config.json fields with the sizes shrunk (the hub's legacy field names: rope_theta/rope_scaling;
transformers' own save is kept beside it as config.transformers.json). Gemma-3-12b-it is the
multimodal Gemma3ForConditionalGeneration with a tiny SigLIP vision tower that the pipeline must
ignore. Goldens (model + KVzip, as parts A/B) are computed from the bf16 weights in fp32.
Qwen3-8B is also scored under the public extraction's RoPE override (YaRN x4 over 32 768,
max_position_embeddings 131 072).

Part E: for every fixture model, the KVzip scores and attention inputs of a whole document
(test/fixtures/cli/doc.txt) under the 'qwen' template of configs/templates.json, with chunk
sizes that do not divide the context; the CLI tests compare `fastkvzip extract`'s store with them.
"""
import json
import os
import shutil

import torch
import transformers

import hf_golden as hg
import st_io
from kvzip_ref import inv_freq_default, inv_freq_linear, inv_freq_llama3, inv_freq_yarn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARD_SIZE = "200KB"
CLI_PREFILL_CHUNK, CLI_SCORE_CHUNK = 48, 40
CLI_TEMPLATE = "qwen"
# The public extraction's model setup for Qwen3 checkpoints that are not -Instruct.
QWEN3_YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
QWEN3_YARN_MAX_POSITIONS = 131072

# Written for this fixture (not from any corpus): ~100 tokens of the fixture tokenizer.
CLI_DOC = ("The old lighthouse stood at the end of the harbour wall, and every evening the keeper climbed "
           "the narrow stairs to trim the wick. Ships far out at sea saw the beam sweep across the water. "
           "In spring the river floods and leaves rich soil behind, so farmers grow wheat and barley.")
CLI_HELDOUT = ("A careful student writes each step of a calculation, checks the result, and explains what it "
               "means in plain words. The keeper wound the clockwork that turned the great lens, and the river "
               "cut valleys into hard rock as it carried sand and stones down to the sea.")

# ---------------------------------------------------------------- the hub configs, shrunk
# Each dict is the checkpoint's config.json as published (field for field), with the sizes
# shrunk (marked "shrunk") and token ids mapped onto the fixture tokenizer (bos 0, eos 2, pad 0).
HUB_CONFIGS = {
    "qwen3-8b": {  # Qwen/Qwen3-8B
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 0, "eos_token_id": 2, "head_dim": 16, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 192,
        "max_position_embeddings": 40960, "max_window_layers": 4, "model_type": "qwen3",
        "num_attention_heads": 8, "num_hidden_layers": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
        "use_cache": True, "use_sliding_window": False, "vocab_size": 320,
    },
    "qwen2.5-7b-instruct-1m": {  # Qwen/Qwen2.5-7B-Instruct-1M
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 0,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 112, "initializer_range": 0.02,
        "intermediate_size": 160, "max_position_embeddings": 1010000, "max_window_layers": 4,
        "model_type": "qwen2", "num_attention_heads": 7, "num_hidden_layers": 4,
        "num_key_value_heads": 1, "rms_norm_eps": 1e-05, "rope_theta": 10000000.0,
        "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False,
        "vocab_size": 320,
        "dual_chunk_attention_config": {"chunk_size": 262144, "local_size": 8192,
                                        "original_max_position_embeddings": 262144},
    },
    "llama-3.1-8b-instruct": {  # meta-llama/Llama-3.1-8B-Instruct
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 0, "eos_token_id": [2], "hidden_act": "silu", "hidden_size": 128,
        "initializer_range": 0.02, "intermediate_size": 224, "max_position_embeddings": 131072,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": 8, "num_hidden_layers": 4,
        "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.42.3", "use_cache": True, "vocab_size": 320,
    },
    "gemma-3-12b-it": {  # google/gemma-3-12b-it: sparse text_config, transformers' defaults fill the rest
        "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
        "eoi_token_index": 256000, "eos_token_id": [2], "image_token_index": 262144,
        "initializer_range": 0.02, "mm_tokens_per_image": 4, "model_type": "gemma3",
        "text_config": {
            "hidden_size": 64, "intermediate_size": 128, "model_type": "gemma3_text",
            "num_attention_heads": 4, "num_hidden_layers": 12, "num_key_value_heads": 2,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 8,
            # shrunk sizes that the real file leaves to the defaults (256, 256, 262208)
            "head_dim": 16, "query_pre_attn_scalar": 16, "vocab_size": 320,
        },
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
        "vision_config": {
            "hidden_size": 32, "image_size": 28, "intermediate_size": 64, "model_type": "siglip_vision_model",
            "num_attention_heads": 2, "num_hidden_layers": 1, "patch_size": 14, "vision_use_head": False,
        },
    },
}
SEEDS = {"qwen3-8b": 201, "qwen2.5-7b-instruct-1m": 202, "llama-3.1-8b-instruct": 203, "gemma-3-12b-it": 204}


def fail(msg):
    hg.fail(msg)


class TextView(torch.nn.Module):
    """A multimodal checkpoint seen as a causal LM by the golden functions: `.model.layers` and
    `.config` are the language model's, and a call runs the WHOLE multimodal model on text only,
    which is how the public extraction runs Gemma-3 -it checkpoints."""

    def __init__(self, mm):
        super().__init__()
        self.mm = mm
        self.model = mm.model.language_model
        self.config = mm.config.text_config
        self.rope_module = type(mm).__module__

    def forward(self, **kw):
        return self.mm(**kw)


def text_config(cfg):
    return cfg.text_config if hasattr(cfg, "text_config") and cfg.text_config is not None else cfg


def expected_rope(name, cfg_dict, yarn=False):
    """Per layer: (inv_freq, cos/sin scale) from our own formulas, and the attention scaling."""
    if name == "gemma-3-12b-it":
        t = cfg_dict["text_config"]
        d = t["head_dim"]
        local, full = inv_freq_default(10000.0, d), inv_freq_linear(1e6, d, t["rope_scaling"]["factor"])
        kinds = ["full" if (i + 1) % 6 == 0 else "sliding" for i in range(t["num_hidden_layers"])]
        return [(full if k == "full" else local, 1.0) for k in kinds], t["query_pre_attn_scalar"] ** -0.5, kinds
    c = cfg_dict
    d = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
    L = c["num_hidden_layers"]
    if yarn:
        inv, scale = inv_freq_yarn(float(c["rope_theta"]), d, QWEN3_YARN["factor"], QWEN3_YARN["original_max_position_embeddings"])
    elif c.get("rope_scaling") and c["rope_scaling"].get("rope_type") == "llama3":
        r = c["rope_scaling"]
        inv, scale = inv_freq_llama3(float(c["rope_theta"]), d, r["factor"], r["low_freq_factor"], r["high_freq_factor"],
                                     r["original_max_position_embeddings"]), 1.0
    else:
        inv, scale = inv_freq_default(float(c["rope_theta"]), d), 1.0
    return [(inv, scale)] * L, d ** -0.5, ["full"] * L


def reinit_lm(model, seed, gemma):
    """Seeded weights as in part A (matrices N(0,.15²), biases N(0,.1²), norms 1+N(0,.1²) or
    Gemma's N(0,.1²), Gemma's embedding std .03); the vision tower keeps its seeded default init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "vision_tower" in name or "multi_modal_projector" in name:
                continue
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                p.copy_((0.03 if gemma and "embed_tokens" in name else 0.15) * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif "norm" in name:
                p.copy_(0.1 * noise if gemma else 1 + 0.1 * noise)
            else:
                fail(f"unexpected parameter {name} {tuple(p.shape)}")


def build(name):
    hub = HUB_CONFIGS[name]
    config = transformers.AutoConfig.for_model(**json.loads(json.dumps(hub)))
    torch.manual_seed(SEEDS[name])
    arch = getattr(transformers, hub["architectures"][0])
    model = arch._from_config(config, attn_implementation="eager") if hasattr(arch, "_from_config") else arch(config)
    reinit_lm(model.float(), SEEDS[name], name.startswith("gemma"))
    return model.to(torch.bfloat16).eval()


def fresh_fp32(name, bf16_model):
    """The built model again in fp32 (fresh fp32 buffers), holding the bf16 weights upcast."""
    hub = HUB_CONFIGS[name]
    config = transformers.AutoConfig.for_model(**json.loads(json.dumps(hub)))
    arch = getattr(transformers, hub["architectures"][0])
    ref = arch._from_config(config, attn_implementation="eager") if hasattr(arch, "_from_config") else arch(config)
    ref = ref.float()
    missing, unexpected = ref.load_state_dict({k: v.float() for k, v in bf16_model.state_dict().items()}, strict=False)
    if unexpected or any("inv_freq" not in k for k in missing):
        fail(f"{name}: rebuilding in fp32: missing {missing}, unexpected {unexpected}")
    ref.eval()
    return TextView(ref) if name.startswith("gemma") else ref


def tensor_names(d):
    names = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with open(os.path.join(d, f), "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            names += [(k, v["dtype"], f) for k, v in header.items() if k != "__metadata__"]
    return names


def save_layout(name, model, d, tok_src):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    model.save_pretrained(d, max_shard_size=SHARD_SIZE)
    index = os.path.join(d, "model.safetensors.index.json")
    shards = [f for f in os.listdir(d) if f.endswith(".safetensors")]
    if not os.path.exists(index) or len(shards) < 2:
        fail(f"{name}: save_pretrained(max_shard_size={SHARD_SIZE}) wrote {sorted(os.listdir(d))}, expected shards + index")
    names = tensor_names(d)
    floats = {dt for _, dt, _ in names}
    if floats != {"BF16"}:
        fail(f"{name}: shards hold {floats}, expected BF16 only")
    # the hub's config.json (legacy field names) replaces transformers' own, which is kept beside it
    os.replace(os.path.join(d, "config.json"), os.path.join(d, "config.transformers.json"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(HUB_CONFIGS[name], f, indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_src, f), os.path.join(d, f))
    prefixes = sorted({k.split(".layers.")[0] for k, _, _ in names if ".layers." in k})
    return {"shards": sorted(shards), "tensors": len(names), "layer_prefixes": prefixes}


def load_fp32(name, d, yarn=False):
    """The saved folder, as transformers loads it (the hub config.json), computing in fp32."""
    kw = {}
    if yarn:
        config = transformers.AutoConfig.from_pretrained(d)
        if hg.V5:
            config.rope_parameters = {**QWEN3_YARN, "rope_theta": float(HUB_CONFIGS[name]["rope_theta"])}
        else:
            config.rope_scaling = dict(QWEN3_YARN)
        config.max_position_embeddings = QWEN3_YARN_MAX_POSITIONS
        kw["config"] = config
    model = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32, **kw) \
        if not name.startswith("gemma") else transformers.Gemma3ForConditionalGeneration.from_pretrained(
            d, attn_implementation="eager", dtype=torch.float32)
    model = model.float().eval()
    if name.startswith("gemma"):
        if type(model).__name__ != "Gemma3ForConditionalGeneration":
            fail(f"{name}: loaded {type(model).__name__}")
        return TextView(model)
    return model


def check_rope_against_transformers(name, view, inv, scale):
    """transformers' own rotary table of the global layers equals our formula (catches a silently
    different yarn factor or attention factor). None when this transformers keeps it elsewhere."""
    rot = getattr(view.model, "rotary_emb", None)
    got = None
    for attr in ("inv_freq", "full_attention_inv_freq"):
        if rot is not None and hasattr(rot, attr):
            got = getattr(rot, attr).float()
            break
    if got is None:
        print(f"{name}: no rotary inv_freq buffer found to compare (the cos-table check still runs)")
        return None
    if got.shape != inv.shape or (got - inv).abs().max().item() > 1e-6 * max(1.0, inv.abs().max().item()):
        fail(f"{name}: transformers' inv_freq {got.tolist()[:4]}... vs ours {inv.tolist()[:4]}...")
    got_scale = float(getattr(rot, "attention_scaling", getattr(rot, "full_attention_attention_scaling", 1.0)))
    if abs(got_scale - scale) > 1e-6:
        fail(f"{name}: transformers' attention_scaling {got_scale} vs ours {scale}")
    return {"inv_freq_max_abs": (got - inv).abs().max().item(), "attention_scaling": got_scale}


def kv_ids_for(tok, texts, ctx_ids):
    return {"prefix": hg.encode(tok, texts["prefix"]), "ctx": ctx_ids,
            "repeat_first": hg.encode(tok, texts["repeat_first"]), "repeat_next": hg.encode(tok, texts["repeat_next"]),
            "postfix": hg.encode(tok, texts["postfix"])}


def cli_texts():
    with open(os.path.join(ROOT, "configs", "templates.json")) as f:
        t = json.load(f)
    tpl = t["templates"][CLI_TEMPLATE]
    sub = lambda s: s.replace("{instruction}", t["instruction"]).replace("{bos_token}", "")
    return {"prefix": sub(tpl["prefix"]), "ctx": CLI_DOC, "repeat_first": t["reconstruction"]["repeatFirst"],
            "repeat_next": t["reconstruction"]["repeatNext"], "postfix": sub(tpl["postfix"]),
            "prev_postfix_tokens": t["reconstruction"]["prevPostfixTokens"]}


def cli_golden(out_dir, golden_name, model_rel, model, spec, tok):
    texts = cli_texts()
    if texts.pop("prev_postfix_tokens") != hg.PREV_POSTFIX_TOKENS:
        fail("templates.json prevPostfixTokens differs from the reference's")
    kv = kv_ids_for(tok, texts, hg.encode(tok, CLI_DOC))
    n_ctx = len(kv["ctx"])
    if n_ctx % CLI_SCORE_CHUNK == 0 or (len(kv["prefix"]) + n_ctx) % CLI_PREFILL_CHUNK == 0:
        fail(f"CLI chunk sizes divide the context ({n_ctx} tokens)")
    t, m = hg.kvzip_golden(golden_name, model, spec, kv, prefill_chunk=CLI_PREFILL_CHUNK,
                           score_chunk=CLI_SCORE_CHUNK, texts={**texts, "template": CLI_TEMPLATE})
    m["model_dir"] = model_rel
    m["max_positions_used"] = m["prefill_len"] + max(c["repeat_len"] for c in m["chunks"])
    # beyond a part-A model's 256 trained positions the CLI refuses unless --allow-long-contexts,
    # which the test passes when this says so (RoPE is exact there; the models are random)
    m["needs_allow_long_contexts"] = m["max_positions_used"] > getattr(model.config, "max_position_embeddings", 1 << 30)
    if len(m["chunks"]) < 2:
        fail(f"{golden_name}: one reconstruction chunk only")
    st_io.save(os.path.join(out_dir, "golden", f"{golden_name}.safetensors"), t)
    with open(os.path.join(out_dir, "golden", f"{golden_name}.json"), "w") as f:
        json.dump(m, f, indent=1)
    print(f"{golden_name}: ctx {n_ctx} tokens, prefix {m['prefix_len']}, positions used {m['max_positions_used']}, "
          f"scores [{t['kvzip.scores'].min():.3g}, {t['kvzip.scores'].max():.3g}]")


def make(out_dir, only=None):
    from tokenizers import Tokenizer
    tok_src = os.path.join(out_dir, "models", "qwen3")
    tok = Tokenizer.from_file(os.path.join(tok_src, "tokenizer.json"))
    cli_dir = os.path.join(out_dir, "cli")
    os.makedirs(cli_dir, exist_ok=True)
    for fname, text in (("doc.txt", CLI_DOC), ("heldout.txt", CLI_HELDOUT)):
        with open(os.path.join(cli_dir, fname), "w", encoding="utf-8") as f:
            f.write(text)
    prompt = hg.encode(tok, hg.PROMPT_TEXT)[:hg.PROMPT_LEN]
    kv_a = {"prefix": hg.encode(tok, hg.KV_PREFIX_TEXT), "ctx": hg.encode(tok, hg.KV_CTX_TEXT)[:hg.KV_CTX_LEN],
            "repeat_first": hg.encode(tok, hg.KV_REPEAT_FIRST_TEXT), "repeat_next": hg.encode(tok, hg.KV_REPEAT_NEXT_TEXT),
            "postfix": hg.encode(tok, hg.KV_POSTFIX_TEXT)}

    # Part D: real layouts. Each checkpoint is tried on its own so that one run on the GPU
    # machine (scarce) yields every fixture that works and names every one that does not.
    errors = []
    for name in HUB_CONFIGS:
        if only and name not in only and "layouts" not in only:
            continue
        try:
            make_layout(out_dir, name, tok, tok_src, prompt, kv_a)
        except Exception as e:  # noqa: BLE001 - reported below, the run still fails
            import traceback
            traceback.print_exc()
            errors.append(f"{name}: {type(e).__name__}: {e}")

    # Part E: CLI goldens of the part-A fixture models
    if not only or "cli" in only:
        for name, spec in hg.specs().items():
            try:
                d = os.path.join(out_dir, "models", name)
                model = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").float().eval()
                cli_golden(out_dir, f"cli-{name}", f"models/{name}", model, spec, tok)
            except Exception as e:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                errors.append(f"cli-{name}: {type(e).__name__}: {e}")
    if errors:
        fail("; ".join(errors))


def make_layout(out_dir, name, tok, tok_src, prompt, kv_a):
    """Part D for one checkpoint: its layout folder, model/KVzip goldens and CLI golden."""
    d = os.path.join(out_dir, "layouts", name)
    model = build(name)
    layout = save_layout(name, model, d, tok_src)
    reload_diff = None
    for yarn in ([False, True] if name == "qwen3-8b" else [False]):
        gname = f"layout-{name}" + ("-yarn" if yarn else "")
        view = load_fp32(name, d, yarn=yarn)
        rope, scaling, kinds = expected_rope(name, HUB_CONFIGS[name], yarn=yarn)
        spec = {"inv_freq": [r[0] for r in rope], "rope_scale": rope[0][1] if not name.startswith("gemma") else 1.0,
                "scored": [i for i, k in enumerate(kinds) if k == "full"], "scaling": scaling,
                "kwargs": {"head_dim": (HUB_CONFIGS[name].get("text_config") or HUB_CONFIGS[name]).get(
                    "head_dim", view.config.hidden_size // view.config.num_attention_heads)}}
        full_layer = spec["scored"][0]
        rot = check_rope_against_transformers(name, view, *rope[full_layer])
        if not yarn:
            # the reloaded folder (hub config.json) equals the model as built: a fresh fp32 build
            # holding the saved bf16 weights (not model.float(): .to(bf16) also rounded its RoPE buffers)
            ref = fresh_fp32(name, model)
            with torch.no_grad():
                diff = hg.max_diff(hg.forward(view, prompt).logits, hg.forward(ref, prompt).logits)
            # recorded, not fatal: the goldens come from the reloaded folder (what a user loads), whose
            # RoPE is checked against our formulas below; a gap here is printed for a look
            reload_diff = diff
            if diff >= 1e-5:
                print(f"WARNING {gname}: reloaded (hub config.json) vs as-built logits differ by {diff:.3g}")
        t_a, m_a = hg.model_golden(gname, view, spec, prompt)
        t_b, m_b = hg.kvzip_golden(gname, view, spec, kv_a)
        cfg = view.config
        meta = {"name": gname, "model_dir": f"layouts/{name}", "architecture": HUB_CONFIGS[name]["architectures"][0],
                "dtype": "bfloat16", "seed": SEEDS[name], "layout": layout, "rope_override": QWEN3_YARN if yarn else None,
                "max_position_embeddings": QWEN3_YARN_MAX_POSITIONS if yarn else getattr(cfg, "max_position_embeddings", None),
                "rope_check": rot, "reload_vs_built_logits_max_abs": reload_diff, "num_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                "num_heads": cfg.num_attention_heads, "num_kv_heads": cfg.num_key_value_heads,
                "head_dim": spec["kwargs"]["head_dim"], "prompt_text": hg.PROMPT_TEXT, **m_a, "kvzip": m_b,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
        st_io.save(os.path.join(out_dir, "golden", f"{gname}.safetensors"), {**t_a, **t_b})
        with open(os.path.join(out_dir, "golden", f"{gname}.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"{gname}: shards {layout['shards']} prefixes {layout['layer_prefixes']} greedy {t_a['greedy_ids'].tolist()} "
              f"scores [{t_b['kvzip.scores'].min():.3g}, {t_b['kvzip.scores'].max():.3g}] rope {rot}")
        cli_golden(out_dir, f"cli-{name}" + ("-yarn" if yarn else ""), f"layouts/{name}", view, spec, tok)
