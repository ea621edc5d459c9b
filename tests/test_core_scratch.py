"""The coder's reused work buffers (cpp/src/format/scratch.hpp): memory that held another
chunk never changes a chunk's bytes, threads share the buffers safely, and a save gives
them back when it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tpde
from tpde import _core
from tpde.store import CheckpointStore


def _chunks(seed: int, count: int = 6, n: int = 300_000) -> list[tuple[np.ndarray, np.ndarray]]:
    """Delta chunks large enough for pooled buffers, each with a different mix of changes."""
    r = np.random.default_rng(seed)
    out = []
    for k in range(count):
        ref = r.standard_normal(n).astype(np.float32)
        x = ref.copy()
        moved = r.random(n) < (k + 1) / (count + 1)
        x[moved] += r.standard_normal(int(moved.sum())).astype(np.float32) * 1e-3
        out.append((x, ref))
    return out


def test_reused_buffers_do_not_change_a_chunks_bytes():
    chunks = _chunks(0)
    _core.trim_scratch()
    fresh = []
    for x, ref in chunks:  # each on freshly allocated buffers
        fresh.append(tpde.encode(x, reference=ref))
        _core.trim_scratch()
    for x, ref in chunks[3:] + chunks[:3]:  # buffers dirty with other chunks' bytes
        tpde.encode(x, reference=ref)
    assert _core.scratch_bytes() > 0
    again = [tpde.encode(x, reference=ref) for x, ref in reversed(chunks)]
    assert again[::-1] == fresh
    for blob, (x, ref) in zip(fresh, chunks):
        assert tpde.decode(blob, reference=ref).tobytes() == x.tobytes()


def test_threads_share_the_buffers_safely():
    chunks = _chunks(1, count=8)
    serial = [tpde.encode(x, reference=ref) for x, ref in chunks]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(lambda c: tpde.encode(c[0], reference=c[1]), chunks)) == serial


def test_trim_frees_every_kept_buffer():
    x, ref = _chunks(2, count=1)[0]
    tpde.encode(x, reference=ref)
    assert _core.scratch_bytes() > 0
    assert _core.trim_scratch() > 0
    assert _core.scratch_bytes() == 0 and _core.trim_scratch() == 0


def test_a_save_gives_the_buffers_back(tmp_path):
    r = np.random.default_rng(3)
    state = {"w": r.standard_normal((512, 1024)).astype(np.float32)}
    store = CheckpointStore(tmp_path / "s", workers=2, progress=False)
    store.save(0, state)
    state["w"][::7] += 1e-3
    store.save(1, state)
    assert _core.scratch_bytes() == 0
    assert store.load(1)["w"].tobytes() == state["w"].tobytes()


def test_a_load_gives_the_buffers_back(tmp_path):
    r = np.random.default_rng(4)
    store = CheckpointStore(tmp_path / "s", workers=2, progress=False)
    saved = [r.standard_normal((512, 1024)).astype(np.float32)]
    saved += [saved[-1] * np.float32(0.999) + np.float32(1e-4)]  # every value moves
    saved += [saved[-1] * np.float32(0.999) + np.float32(1e-4)]
    for step, w in enumerate(saved):
        store.save(step, {"w": w})
    x, ref = _chunks(5, count=1)[0]
    tpde.encode(x, reference=ref)  # something held before the load
    assert _core.scratch_bytes() > 0
    reader = CheckpointStore(tmp_path / "s", mode="r", workers=2, progress=False)
    assert reader.load(2)["w"].tobytes() == saved[2].tobytes()
    assert _core.scratch_bytes() == 0


def test_known_reference_fingerprints_give_the_same_chunk():
    x, ref = _chunks(6, count=1)[0]
    prev = ref - np.float32(1e-3)
    plain = tpde.encode(x, reference=ref, prev_reference=prev)
    known = _core.encode(x, reference=ref, prev_reference=prev, reference_fingerprint=_core.fingerprint(ref),
                         prev_reference_fingerprint=_core.fingerprint(prev))
    assert known == plain
    wrong = _core.encode(x, reference=ref, reference_fingerprint=_core.fingerprint(ref) ^ 1)
    with pytest.raises(tpde.TPDEError) as e:  # the header names another reference
        tpde.decode(wrong, reference=ref)
    assert e.value.code == "reference_mismatch"
    with pytest.raises(tpde.TPDEError, match="without reference"):
        _core.encode(x, reference_fingerprint=1)


def test_a_store_codes_the_same_chunks_with_the_fingerprints_it_kept(tmp_path, monkeypatch):
    from tpde.store import save as save_module

    r = np.random.default_rng(7)
    states = [{"w": r.standard_normal((300, 1000)).astype(np.float32), "b": np.zeros(10, np.float32)}]
    for _ in range(3):
        states.append({k: v + np.float32(1e-3) * (r.random(v.shape) < 0.3) for k, v in states[-1].items()})
    bundles, used = [], []
    real = save_module._known_fingerprint
    for kept in (True, False):
        monkeypatch.setattr(save_module, "_known_fingerprint",
                            (lambda *a: used.append(real(*a)) or used[-1]) if kept else (lambda *a: None))
        store = CheckpointStore(tmp_path / f"s{kept}", workers=1, progress=False)
        for step, state in enumerate(states):
            store.save(step, state)
        bundles.append([(tmp_path / f"s{kept}" / "steps" / str(s) / ".bundle").read_bytes() for s in range(4)])
        assert store.load(3)["w"].tobytes() == states[3]["w"].tobytes()
    assert bundles[0] == bundles[1]
    assert sum(crc is not None for crc in used) >= 5  # references and contexts of steps 1-3


_FORKS = """
import os, threading, numpy as np, tpde
x = np.random.default_rng(0).standard_normal(400_000).astype(np.float32)
ref = x + np.float32(1e-3)
stop = False
def spin():
    while not stop:
        tpde.encode(x, reference=ref)
threads = [threading.Thread(target=spin) for _ in range(2)]
for t in threads:
    t.start()
ok = 0
for _ in range(20):
    pid = os.fork()
    if pid == 0:  # the pool's lock may have been held by a parent thread at the fork
        blob = tpde.encode(x, reference=ref)
        os._exit(0 if tpde.decode(blob, reference=ref).tobytes() == x.tobytes() else 1)
    ok += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
stop = True
for t in threads:
    t.join()
print(ok)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_threads_code_can_code():
    out = subprocess.run([sys.executable, "-c", _FORKS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["20"], out.stderr[-2000:]
