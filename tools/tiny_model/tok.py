"""Byte-level BPE tokenizer (HF `tokenizers`), or a merge-free byte-level fallback for --smoke.

Both produce a standard Hugging Face tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder,
no normalizer) with `<|endoftext|>` as id 0; the fallback is simply that BPE with no merges.
"""
import json

import numpy as np

EOT = "<|endoftext|>"


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable character map used by ByteLevel."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _added_token(content: str, id_: int) -> dict:
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


class ByteTokenizer:
    """Fallback: id 0 = <|endoftext|>, id 1 + b = byte b. Same ids as the exported merge-free BPE json."""
    kind = "byte-level (no merges; smoke fallback)"

    def __init__(self):
        self.vocab_size = 257

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + 1

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def to_json(self) -> str:
        b2u = bytes_to_unicode()
        vocab = {EOT: 0}
        vocab.update({b2u[b]: b + 1 for b in range(256)})
        tj = {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [_added_token(EOT, 0)],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": []},
        }
        return json.dumps(tj, ensure_ascii=False, indent=2)


class BPETokenizer:
    """Byte-level BPE trained with HF `tokenizers` (Rust, multi-threaded)."""
    kind = "byte-level BPE (HF tokenizers)"

    def __init__(self, texts, vocab_size: int):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        assert tok.token_to_id(EOT) == 0, "<|endoftext|> must be id 0"
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text).ids, dtype=np.int32)

    def encode_batch(self, texts):
        return [np.asarray(e.ids, dtype=np.int32) for e in self.tok.encode_batch(list(texts))]

    def to_json(self) -> str:
        return self.tok.to_str(pretty=True)


def make_tokenizer(texts, vocab_size: int, allow_fallback: bool):
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        if not allow_fallback:
            raise SystemExit("error: the `tokenizers` package is required (only --smoke may fall back to bytes)")
        return ByteTokenizer()
    return BPETokenizer(texts, vocab_size)


def tokenizer_config(max_len: int) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT, "eos_token": EOT, "pad_token": EOT, "unk_token": None,
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "clean_up_tokenization_spaces": False, "model_max_length": max_len,
        "added_tokens_decoder": {"0": {k: v for k, v in _added_token(EOT, 0).items() if k != "id"}},
    }
