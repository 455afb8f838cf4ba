"""Print library versions and verify the transformers API assumptions of make_fixtures.py.

    python3 tools/reference/check_env.py          # quick probes + a full dry run into a temp dir
    python3 tools/reference/check_env.py --quick  # probes only
"""
import importlib
import os
import platform
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODULES = {"llama": "LlamaConfig", "qwen2": "Qwen2Config", "qwen3": "Qwen3Config", "gemma3": "Gemma3TextConfig"}


def version(name):
    try:
        return importlib.import_module(name).__version__
    except Exception as e:  # noqa: BLE001
        return f"MISSING ({type(e).__name__}: {e})"


def main():
    print(f"python       {platform.python_version()}")
    for name in ("torch", "transformers", "tokenizers", "safetensors", "numpy"):
        print(f"{name:<12} {version(name)}")
    import torch
    import transformers
    problems = []
    if int(transformers.__version__.split(".")[0]) < 5:
        print("note: transformers < 5; the v4 config path (rope_theta/rope_scaling) is used, less tested")
    for family, cfg_name in MODULES.items():
        if not hasattr(transformers, cfg_name):
            problems.append(f"transformers has no {cfg_name}")
        mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
        if not callable(getattr(mod, "apply_rotary_pos_emb", None)):
            problems.append(f"{mod.__name__}.apply_rotary_pos_emb is missing (queries/keys cannot be recorded)")
    from transformers import DynamicCache
    cache = DynamicCache()
    if not (hasattr(cache, "layers") or hasattr(cache, "key_cache")):
        problems.append("DynamicCache has neither .layers nor .key_cache")
    print(f"DynamicCache layout: {'layers[l].keys' if hasattr(cache, 'layers') else 'key_cache[l]'}")

    import hf_golden
    spec = hf_golden.specs()["gemma3"]
    cfg = getattr(transformers, spec["config"])(vocab_size=320, **spec["kwargs"])
    print(f"Gemma3TextConfig.layer_types    = {list(getattr(cfg, 'layer_types', []) or [])}")
    print(f"Gemma3TextConfig.rope_parameters = {getattr(cfg, 'rope_parameters', None)}")
    print(f"Gemma3TextConfig.sliding_window = {cfg.sliding_window}, query_pre_attn_scalar = {cfg.query_pre_attn_scalar}")
    if list(getattr(cfg, "layer_types", []) or []) != hf_golden.GEMMA_LAYER_TYPES:
        problems.append("Gemma3TextConfig did not keep the layer_types we passed")
    torch.manual_seed(0)
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        sys.exit(1)
    if "--quick" not in sys.argv:
        import gate_golden
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "golden"))
            gate_golden.make(os.path.join(d, "golden"))
            hf_golden.make(d)  # raises with a clear message on any broken assumption
    print("check_env: OK")


if __name__ == "__main__":
    main()
