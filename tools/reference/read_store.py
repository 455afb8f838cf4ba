#!/usr/bin/env python3
"""Independent reader for a fastkvzip feature store (pyarrow + numpy).

Reads layer L of every shard listed in STORE/manifest.json and prints, per shard, the
shapes, dtypes, value statistics, sha256 of the raw hidden / score bytes, and the absolute
file offsets of those bytes (which must equal what `layerBlocks` in src/features reports).

    python3 tools/reference/read_store.py STORE [--layer L ...] [--verify] [--json]
        [--compare expected.json] [--ort-check]

--verify     also checks each shard file's size and sha256 against the manifest
--json       one JSON object per (layer, shard) instead of text
--compare F  F is {"<layer>": [{"contextId", "hidden": {"offset","length"}, "score": {...},
             "hiddenSha256", "scoreSha256"}, ...]} (e.g. written from layerBlocks + readLayer);
             every entry must match what pyarrow sees, else exit 1
--ort-check  loads each layer's hidden block straight from the .arrow file as an ONNX
             external-data initializer in onnxruntime (what the trainer does) and compares
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import pyarrow as pa


def fail(msg):
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def values_location(flat, base_address, itemsize):
    """Absolute file offset of a (zero-copy) primitive array's values."""
    data_buf = flat.buffers()[1]
    return data_buf.address - base_address + flat.offset * itemsize


def read_shard_layer(store, manifest, shard, layer):
    path = os.path.join(store, *shard["file"].split("/"))
    with pa.memory_map(path, "r") as mm:
        whole = mm.read_buffer()  # zero copy: batch buffers point into this mapping
        reader = pa.ipc.open_file(pa.BufferReader(whole))
        meta = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items()}
        layers = json.loads(meta["fastkvzip.layers"])
        D, H = int(meta["fastkvzip.D"]), int(meta["fastkvzip.H"])
        dtype = meta["fastkvzip.hidden_dtype"]
        if layers != manifest["model"]["scoredLayers"]:
            fail(f"{path}: layers {layers} differ from the manifest")
        if (D, H, dtype) != (manifest["model"]["D"], manifest["model"]["H"], manifest["hiddenDtype"]):
            fail(f"{path}: D/H/dtype {(D, H, dtype)} differ from the manifest")
        field_dtype = reader.schema.field("hidden").metadata.get(b"dtype", b"").decode()
        if field_dtype != dtype:
            fail(f"{path}: hidden field dtype tag {field_dtype!r}, schema says {dtype!r}")
        if reader.num_record_batches != len(layers):
            fail(f"{path}: {reader.num_record_batches} record batches for {len(layers)} layers")
        i = layers.index(layer)
        custom = None
        if hasattr(reader, "get_batch_with_custom_metadata"):
            batch, custom = reader.get_batch_with_custom_metadata(i)
        else:
            batch = reader.get_batch(i)
        if custom is not None:
            tag = custom.to_dict().get(b"fastkvzip.layer") if hasattr(custom, "to_dict") else dict(custom).get(b"fastkvzip.layer")
            if tag is not None and int(tag) != layer:
                fail(f"{path}: record batch {i} is tagged layer {tag.decode()}, expected {layer}")
        T = batch.num_rows
        if T != shard["tokens"]:
            fail(f"{path}: layer {layer} has {T} rows, manifest says {shard['tokens']}")
        hidden_flat = batch.column("hidden").values  # child array, already sliced to the rows
        score_flat = batch.column("score").values
        expect_type = pa.float16() if dtype == "float16" else pa.uint16()
        if hidden_flat.type != expect_type or score_flat.type != pa.float32():
            fail(f"{path}: column types {hidden_flat.type}/{score_flat.type}")
        hidden_bits = hidden_flat.to_numpy(zero_copy_only=True).view(np.uint16).reshape(T, D)
        scores = score_flat.to_numpy(zero_copy_only=True).reshape(T, H)
        hidden_f32 = hidden_bits.view(np.float16).astype(np.float32) if dtype == "float16" else bf16_to_f32(hidden_bits)
        finite = hidden_f32[np.isfinite(hidden_f32)]
        info = {
            "layer": layer,
            "contextId": shard["contextId"],
            "rows": T,
            "file": path,
            "hidden": {
                "dtype": dtype,
                "shape": [T, D],
                "offset": int(values_location(hidden_flat, whole.address, 2)),
                "length": int(hidden_bits.nbytes),
            },
            "score": {
                "dtype": "float32",
                "shape": [T, H],
                "offset": int(values_location(score_flat, whole.address, 4)),
                "length": int(scores.nbytes),
            },
            "hiddenSha256": hashlib.sha256(hidden_bits.tobytes()).hexdigest(),
            "scoreSha256": hashlib.sha256(np.ascontiguousarray(scores).tobytes()).hexdigest(),
            "hiddenStats": {
                "nonFinite": int(hidden_f32.size - finite.size),
                "min": float(finite.min()) if finite.size else None,
                "max": float(finite.max()) if finite.size else None,
                "mean": float(finite.mean()) if finite.size else None,
            },
            "scoreStats": {"min": float(scores.min()), "max": float(scores.max()), "mean": float(scores.mean())},
        }
        # raw bytes at the reported offsets must be the values themselves
        with open(path, "rb") as f:
            f.seek(info["hidden"]["offset"])
            if f.read(info["hidden"]["length"]) != hidden_bits.tobytes():
                fail(f"{path}: bytes at the hidden offset differ from the hidden values")
        return info, hidden_f32


def ort_check(store, manifest, layer, shards_info, expected):
    """Feeds each shard's hidden block to onnxruntime as an external-data initializer."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    onnx_dtype = TensorProto.FLOAT16 if manifest["hiddenDtype"] == "float16" else TensorProto.BFLOAT16
    model_path = os.path.join(store, f".ort-check-{os.getpid()}.onnx")
    try:
        for info, ref in zip(shards_info, expected):
            init = TensorProto()
            init.name = "hidden"
            init.data_type = onnx_dtype
            init.dims.extend(info["hidden"]["shape"])
            init.data_location = TensorProto.EXTERNAL
            rel = os.path.relpath(info["file"], store).replace(os.sep, "/")
            for k, v in (("location", rel), ("offset", str(info["hidden"]["offset"])), ("length", str(info["hidden"]["length"]))):
                e = init.external_data.add()
                e.key, e.value = k, v
            node = helper.make_node("Cast", ["hidden"], ["out"], to=TensorProto.FLOAT)
            out = helper.make_tensor_value_info("out", TensorProto.FLOAT, info["hidden"]["shape"])
            graph = helper.make_graph([node], "ortcheck", [], [out], initializer=[init])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            with open(model_path, "wb") as f:
                f.write(model.SerializeToString())
            sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
            got = sess.run(["out"], {})[0]
            same = np.array_equal(got.view(np.uint32), ref.view(np.uint32)) or np.array_equal(got, ref, equal_nan=True)
            print(f"ort-check layer {layer} {info['contextId']}: {'ok' if same else 'MISMATCH'}")
            if not same:
                fail(f"onnxruntime read different hidden values for {info['contextId']} layer {layer}")
    finally:
        if os.path.exists(model_path):
            os.remove(model_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--layer", type=int, action="append", help="layer to read (repeatable; default: all stored)")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--compare")
    ap.add_argument("--ort-check", action="store_true")
    args = ap.parse_args()

    with open(os.path.join(args.store, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != "fastkvzip-features" or manifest.get("version") != 1:
        fail("not a fastkvzip-features v1 store")
    m = manifest["model"]
    if not args.json:
        print(f"store {args.store}: model {m['id']} D={m['D']} H={m['H']} layers={m['scoredLayers']} "
              f"hidden={manifest['hiddenDtype']} contexts={manifest['totals']['contexts']} "
              f"tokens={manifest['totals']['tokens']} bytes={manifest['totals']['bytes']} complete={manifest['complete']}")
    if args.verify:
        for s in manifest["shards"]:
            p = os.path.join(args.store, *s["file"].split("/"))
            size = os.path.getsize(p)
            if size != s["bytes"]:
                fail(f"{p}: size {size}, manifest says {s['bytes']}")
            if sha256_file(p) != s["sha256"]:
                fail(f"{p}: sha256 differs from the manifest")
        if not args.json:
            print(f"verify: {len(manifest['shards'])} shards ok (size and sha256)")

    expected = None
    if args.compare:
        with open(args.compare) as f:
            expected = json.load(f)
    mismatches = 0
    for layer in args.layer or m["scoredLayers"]:
        infos, arrays = [], []
        for s in manifest["shards"]:
            info, hidden_f32 = read_shard_layer(args.store, manifest, s, layer)
            infos.append(info)
            arrays.append(hidden_f32)
            if args.json:
                print(json.dumps(info))
            else:
                h, sc = info["hidden"], info["score"]
                print(f"layer {layer:3d} {s['contextId']}: hidden {h['dtype']}{h['shape']} @ {h['offset']}+{h['length']} "
                      f"sha256 {info['hiddenSha256'][:16]} | score f32{sc['shape']} @ {sc['offset']}+{sc['length']} "
                      f"sha256 {info['scoreSha256'][:16]} | score mean {info['scoreStats']['mean']:.4f} "
                      f"hidden mean {info['hiddenStats']['mean']}")
        if expected is not None:
            want = expected.get(str(layer))
            if want is None or len(want) != len(infos):
                print(f"compare: layer {layer}: expected {0 if want is None else len(want)} shards, found {len(infos)}")
                mismatches += 1
            else:
                for w, got in zip(want, infos):
                    for key, a, b in (
                        ("contextId", w["contextId"], got["contextId"]),
                        ("hidden.offset", w["hidden"]["offset"], got["hidden"]["offset"]),
                        ("hidden.length", w["hidden"]["length"], got["hidden"]["length"]),
                        ("score.offset", w["score"]["offset"], got["score"]["offset"]),
                        ("score.length", w["score"]["length"], got["score"]["length"]),
                        ("hiddenSha256", w.get("hiddenSha256", got["hiddenSha256"]), got["hiddenSha256"]),
                        ("scoreSha256", w.get("scoreSha256", got["scoreSha256"]), got["scoreSha256"]),
                    ):
                        if a != b:
                            print(f"compare: layer {layer} {got['contextId']}: {key} expected {a}, pyarrow sees {b}")
                            mismatches += 1
        if args.ort_check:
            ort_check(args.store, manifest, layer, infos, arrays)
    if expected is not None:
        print(f"compare: {'all match' if mismatches == 0 else f'{mismatches} MISMATCHES'}")
        if mismatches:
            sys.exit(1)


if __name__ == "__main__":
    main()
