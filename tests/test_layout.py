"""The package layout: small modules, and codecs that load without the store or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import tpde
from tpde import dtypes

PACKAGE = Path(tpde.__file__).resolve().parent
MAX_LINES = 500


def test_no_python_module_is_over_500_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 20  # the whole package was found
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}


def test_importing_the_codecs_leaves_the_store_and_torch_out():
    script = (
        "import sys, tpde.codecs, numcodecs, zarr\n"
        "from tpde.codecs import TPDECodec, TPDEZarrCodec\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('tpde.store', 'tpde.state', 'tpde.cli'))\n"
        "          or m == 'torch' or m.startswith('torch.'))\n"
        "print(repr(loaded), numcodecs.get_codec({'id': 'tpde'}).codec_id)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "tpde"]


def test_the_store_is_still_reachable_from_the_package():
    script = "import sys, tpde\nprint(tpde.CheckpointStore.__module__, 'tpde.store' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["tpde.store", "True"]


def test_one_dtype_table_from_the_core():
    assert list(dtypes.CODEC_DTYPES) == list(tpde._core.DTYPES)
    assert dtypes.storage_dtype("bfloat16") == np.dtype(np.uint16)
    assert dtypes.FLOAT_DTYPES == ("float32", "float64", "float16", "bfloat16")
    for name, d in dtypes.CODEC_DTYPES.items():
        assert d.storage.itemsize == d.itemsize, name
        x = np.zeros(3, d.storage)
        assert tpde.read_header(tpde.encode(x, dtype=name))["dtype"] == name
