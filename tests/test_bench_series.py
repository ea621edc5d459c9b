"""The bench's word-vocabulary series: tokenizer round trip, and a real fine-tune whose
unused token rows keep zero moments, coded bit-exactly by tpde delta."""
import numpy as np
import pytest

from bench import vocab

torch = pytest.importorskip("torch")


def test_vocab_round_trip_and_fallback():
    text = b"def f(self):\n    return self.x + 42  # caf\xc3\xa9\n\n"
    words = vocab.build_vocab(text * 3 + b"self self x", 300)
    assert words[0] == b"self"  # most frequent multi-byte word
    ids = vocab.encode(text, words)
    assert ids.dtype == np.int64 and ids.max() < 256 + len(words)
    assert (ids >= 256).any() and (ids < 256).any()  # words and byte fallback
    assert vocab.decode(ids, words) == text


def test_vocab_is_deterministic_on_ties():
    assert vocab.build_vocab(b"bb aa cc aa bb cc", 258) == [b"aa", b"bb"]


def test_finetune_8k_unused_rows_and_bit_exact_delta(tmp_path):
    import tpde
    from bench import series as S

    paths = S.make_series("finetune-8k", tmp_path, small=True, log=lambda *a: None)
    cfg = S.config_for("finetune-8k", small=True)
    ids, _ = S.tokens("finetune-8k", cfg)
    unused = np.setdiff1d(np.arange(cfg.vocab), np.unique(ids))
    assert unused.size > 0
    steps = [S.flatten_checkpoint(torch.load(p, weights_only=True)) for p in paths]
    emb_index = 0  # tok.weight is the first parameter of the decay group
    assert np.array_equal(steps[-1]["model/tok.weight"].shape, (cfg.vocab, cfg.d_model))
    for key in ("exp_avg", "exp_avg_sq"):
        m = steps[-1][f"optimizer/state/{emb_index}/{key}"]
        assert m.shape == (cfg.vocab, cfg.d_model)
        assert not m[unused].any()  # a fresh AdamW never touched these rows
    for name, x in steps[-1].items():
        if x.dtype.kind != "f":
            continue
        chunk = tpde.encode(x, reference=steps[-2][name], prev_reference=steps[-3][name])
        back = tpde.decode(chunk, reference=steps[-2][name], prev_reference=steps[-3][name])
        assert back.tobytes() == x.tobytes(), name
