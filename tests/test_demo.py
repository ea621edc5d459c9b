"""The README's first command, `tpde-demo`, on a short run: it trains, saves through the
store, restores every step bit-exactly (run() raises otherwise) and prints its figures."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tpde.cli import demo  # noqa: E402


def test_demo_run_figures(tmp_path):
    f = demo.run(steps=12, save_every=4, store_path=str(tmp_path / "run.tpde"))
    assert [s[0] for s in f["steps"]] == [4, 8, 12]
    assert [s[1] for s in f["steps"]] == ["keyframe", "delta", "delta"]
    assert 0 < f["tpde_bytes"] < f["raw_bytes"]
    assert 0 < f["zstd_bytes"] < f["raw_bytes"]
    assert f["raw_bytes"] == sum(s[3] for s in f["steps"])
    assert f["codec_seconds"] > 0 and f["tpde_seconds"] > 0 and f["zstd_seconds"] > 0
    assert (tmp_path / "run.tpde").is_dir()


def test_demo_main_prints_the_comparison(capsys):
    assert demo.main(["--steps", "8", "--save-every", "4"]) == 0
    out = capsys.readouterr().out
    assert "all 2 checkpoints restored bit-exactly" in out
    for line in ("zstd-3 of tensors", "tpde store", "tpde codec alone", "tpde vs zstd-3"):
        assert line in out
