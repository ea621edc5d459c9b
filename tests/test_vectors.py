"""Frozen vectors (tests/vectors/, written once by make_vectors.py): every chunk of every
format version must keep decoding to the same bits, the encoder must keep producing the same
bytes, and every corrupt chunk in vectors/bad/ must keep raising its TPDEError code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import chunkfmt
import tpde

VECTORS = Path(__file__).resolve().parent / "vectors"
CASES = sorted(p for p in VECTORS.iterdir() if p.is_dir() and p.name.startswith("v"))
BAD = json.loads((VECTORS / "bad" / "expected.json").read_text())


def load(case: Path):
    config = json.loads((case / "config.json").read_text())
    arrays = {}
    for name in ("input", "reference", "prev_reference", "decoded"):
        path = case / f"{name}.npy"
        arrays[name] = np.load(path) if path.exists() else None
    return config, arrays, (case / "encoded.bin").read_bytes()


def bits(a) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def test_vectors_exist():
    assert len(CASES) >= 40
    assert len(BAD) >= 20
    # valid since formats 3, 4 and 5
    assert not {"version_3.bin", "version_4.bin", "version_5.bin"} & set(BAD)
    # Format 5 changed the rANS section of every coded chunk: every case is frozen again.
    names = {c.name.split("_", 1)[1] for c in CASES}
    assert names == {c.name.split("_", 1)[1] for c in CASES if c.name.startswith("v5_")}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decode_frozen_vector(case):
    config, arrays, chunk = load(case)
    header = tpde.read_header(chunk)
    assert header["version"] == config["format_version"]
    assert header["dtype"] == config["dtype"]
    assert list(header["shape"]) == config["shape"]
    assert header["mode"] == config["mode"]
    assert header["uses_prev_reference"] == config["uses_prev_reference"]
    assert header["reference_fingerprint"] == config["reference_fingerprint"]
    assert header["prev_reference_fingerprint"] == config["prev_reference_fingerprint"]
    assert header["header_size"] + header["payload_size"] == len(chunk)
    if arrays["reference"] is not None:
        assert header["reference_fingerprint"] == chunkfmt.crc32c(bits(arrays["reference"]))
    y = tpde.decode(chunk, reference=arrays["reference"], prev_reference=arrays["prev_reference"])
    assert y.dtype == np.dtype(config["numpy_dtype"])
    assert list(y.shape) == config["shape"]
    expected = arrays["input"] if config["lossless"] else arrays["decoded"]
    assert bits(y) == bits(expected)
    info = chunkfmt.parse(chunk)
    assert chunkfmt.VALUE_SCHEMES[info["value_scheme"]] == config["schemes"]["value"]
    if config["schemes"]["value"] != "stored":
        assert chunkfmt.POSITION_SCHEMES[info["position_scheme"]] == config["schemes"]["position"]
        assert chunkfmt.CONTEXT_SCHEMES[info["context_scheme"]] == config["schemes"]["context"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_encoding_is_unchanged(case):
    """The encoder is deterministic and its output is frozen. If this fails while decoding
    passes, the encoder's choices changed (not the format): decide whether that is intended;
    never rewrite these vectors, add new ones."""
    config, arrays, chunk = load(case)
    if config["format_version"] != tpde.FORMAT_VERSION:
        # Cases frozen under an earlier version still encode to the same bytes but the
        # version byte (lossy blocks changed size in format 2: those of format 1 are decode-only).
        if config["format_version"] == 1 and not config["lossless"]:
            pytest.skip("format-1 lossy vector: decode-only")
        chunk = chunkfmt.patch(chunk, 4, "<B", tpde.FORMAT_VERSION)
    dtype = "bfloat16" if config["dtype"] == "bfloat16" else None
    again = tpde.encode(arrays["input"], reference=arrays["reference"], prev_reference=arrays["prev_reference"],
                        dtype=dtype, **config["encode_kwargs"])
    if config["format_version"] < 3 and chunkfmt.parse(again)["transform"] == 1:
        # Format 3 added extrapolated references; the encoder takes one only where it is smaller.
        assert len(again) < len(chunk)
        y = tpde.decode(again, reference=arrays["reference"], prev_reference=arrays["prev_reference"])
        assert bits(y) == bits(arrays["input"])
        return
    if config["format_version"] < 5 and config["schemes"]["value"] != "stored":
        # Format 5 interleaves two rANS states: an older coded chunk differs from today's in
        # that section only (its v5_ twin freezes the whole chunk).
        chunk, again = (chunkfmt.replace_section(c, "rans", b"") for c in (chunk, again))
    assert again == chunk


def test_vectors_cover_every_scheme():
    seen = {"value": set(), "position": set(), "context": set(), "mode": set(), "dtype": set(), "lossy": set(),
            "without_reference": set()}
    for case in CASES:
        config, _, chunk = load(case)
        schemes = config["schemes"]
        seen["value"].add(schemes["value"])
        seen["mode"].add(config["mode"])
        seen["dtype"].add(config["dtype"])
        seen["lossy"].add(tpde.read_header(chunk).get("lossy"))
        if schemes["value"] != "stored":
            seen["position"].add(schemes["position"])
            seen["context"].add(schemes["context"])
            seen["without_reference"].add(schemes["without_reference"])
    assert seen["value"] == set(chunkfmt.VALUE_SCHEMES.values())
    assert seen["position"] == set(chunkfmt.POSITION_SCHEMES.values())
    assert seen["context"] == set(chunkfmt.CONTEXT_SCHEMES.values())
    assert seen["mode"] == {"standalone", "delta"}
    assert seen["dtype"] == set(chunkfmt.DTYPE_CODES)
    assert seen["lossy"] == {None, "absolute", "log_relative"}
    assert seen["without_reference"] == {0, 1}
    transforms = {chunkfmt.parse(load(case)[2])["transform"] for case in CASES}
    assert transforms == {0, 1, 2}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_vector(name):
    spec = BAD[name]
    chunk = (VECTORS / "bad" / name).read_bytes()
    kwargs = {arg: np.load(VECTORS / path) for arg, path in spec["decode_with"].items()}
    with pytest.raises(tpde.TPDEError) as info:
        tpde.decode(chunk, **kwargs)
    assert info.value.code == spec["code"], str(info.value)
    assert str(info.value)
