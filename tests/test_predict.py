"""Cross-state prediction in the core: tpde._core.fit_prediction / predict."""
import numpy as np
import pytest

import tpde
from tpde import _core

RNG = np.random.default_rng(7)


def _adam_like(n, dtype=np.float32):
    m = (RNG.standard_normal(n) * 1e-3).astype(dtype)
    v = (RNG.random(n) * 1e-6 + 1e-9).astype(dtype)
    return m, v


def _as(dtype, a):
    """float64 values -> stored array of the codec dtype (bfloat16: uint16 bits, rounded)."""
    if dtype == "bfloat16":
        b = a.astype(np.float32).view(np.uint32)
        return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return a.astype(dtype)


def test_predict_matches_the_documented_formula_float32():
    n = 5000
    ref = RNG.standard_normal(n).astype(np.float32) * 0.02
    m1, v1 = _adam_like(n)
    m0, v0 = _adam_like(n)
    terms = [("adam_direction", m1, v1), ("adam_direction", m0, v0)]
    coefs = [-3e-4, -2e-4, -1e-5]
    got = _core.predict(ref, terms, coefs)
    r = ref.astype(np.float64)
    f0 = m1.astype(np.float64) / (np.sqrt(v1.astype(np.float64)) + 1e-8)
    f1 = m0.astype(np.float64) / (np.sqrt(v0.astype(np.float64)) + 1e-8)
    acc = coefs[2] * r
    acc = acc + coefs[0] * f0
    acc = acc + coefs[1] * f1
    want = (r + acc).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert got.tobytes() == want.tobytes()


def test_scaled_delta_term_formula_float64():
    n = 1000
    w, w0 = RNG.standard_normal(n), RNG.standard_normal(n)
    v = RNG.random(n)
    ref = RNG.standard_normal(n)
    got = _core.predict(ref, [("scaled_delta", w, w0, v)], [0.5, 0.25])
    want = ref + (0.25 * ref + 0.5 * ((w - w0) * (np.sqrt(v) + 1e-8)))
    assert got.tobytes() == want.tobytes()


def test_fit_recovers_the_coefficients():
    n = 20000
    ref = RNG.standard_normal(n) * 0.02
    m, v = _adam_like(n, np.float64)
    u = m / (np.sqrt(v) + 1e-8)
    x = ref + (-5e-4 * u + 0.01 * ref)
    coefs, explained = _core.fit_prediction(x, ref, [("adam_direction", m, v)])
    assert coefs == pytest.approx([-5e-4, 0.01], rel=1e-6)
    assert explained == pytest.approx(1.0, abs=1e-9)
    noisy = x + RNG.standard_normal(n) * np.std(x - ref)
    _, half = _core.fit_prediction(noisy, ref, [("adam_direction", m, v)])
    assert 0.4 < half < 0.6


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_prediction_as_reference_round_trips_bit_exact(dtype):
    n = 4096
    ref64 = RNG.standard_normal(n) * 0.02
    m64 = RNG.standard_normal(n) * 1e-3
    v64 = RNG.random(n) * 1e-6 + 1e-9
    x64 = ref64 - 1e-3 * m64 / np.sqrt(v64) * 1e-2 + RNG.standard_normal(n) * 1e-5
    ref, m, v, x = (_as(dtype, a) for a in (ref64, m64, v64, x64))
    terms = [("adam_direction", m, v)]
    coefs, _ = _core.fit_prediction(x, ref, terms, dtype=dtype)
    assert coefs is not None and len(coefs) == 2
    pred = _core.predict(ref, terms, coefs, dtype=dtype)
    again = _core.predict(ref.copy(), [("adam_direction", m.copy(), v.copy())], coefs, dtype=dtype)
    assert pred.tobytes() == again.tobytes()  # deterministic
    chunk = tpde.encode(x, reference=pred, dtype=dtype)
    out = tpde.decode(chunk, reference=pred)
    assert out.tobytes() == x.tobytes()


def test_prediction_helps_on_adam_like_updates():
    n = 1 << 16
    ref = (RNG.standard_normal(n) * 0.02).astype(np.float32)
    m, v = _adam_like(n)
    x = (ref.astype(np.float64) - 2e-3 * m / (np.sqrt(v.astype(np.float64)) + 1e-8)
         + RNG.standard_normal(n) * 2e-5).astype(np.float32)
    terms = [("adam_direction", m, v)]
    pred = _core.predict(ref, terms, _core.fit_prediction(x, ref, terms)[0])
    assert len(tpde.encode(x, reference=pred)) < 0.9 * len(tpde.encode(x, reference=ref))


def test_fit_ignores_non_finite_rows_and_zero_terms():
    n = 1000
    ref = RNG.standard_normal(n)
    m, v = np.zeros(n), np.ones(n)
    x = ref * 1.5
    x[::10] = np.nan
    coefs, explained = _core.fit_prediction(x, ref, [("adam_direction", m, v)])
    assert coefs == pytest.approx([0.0, 0.5]) and explained == pytest.approx(1.0)
    assert _core.fit_prediction(np.full(4, np.nan), np.zeros(4), [("adam_direction", np.ones(4), np.ones(4))]) is None


@pytest.mark.parametrize("call, code, words", [
    (lambda a: _core.predict(a.astype(np.int32), [("adam_direction", a.astype(np.int32), a.astype(np.int32))], [1, 1]),
     "bad_dtype", "float dtype"),
    (lambda a: _core.predict(a, [("adam_direction", a[:-1], a)], [1, 1]), "size_mismatch", "does not match"),
    (lambda a: _core.predict(a, [("momentum", a, a)], [1, 1]), "invalid_argument",
     "unknown prediction term 'momentum'"),
    (lambda a: _core.predict(a, [("adam_direction", a)], [1, 1]), "invalid_argument", "takes 2 arrays"),
    (lambda a: _core.predict(a, [("adam_direction", a, a)], [1.0]), "invalid_argument", "needs 2 coefficients"),
    (lambda a: _core.predict(a, [], [1.0]), "invalid_argument", "1 to 4 terms"),
    (lambda a: _core.predict(a, [5], [1, 1]), "invalid_argument", "is a tuple"),
    (lambda a: _core.predict(a, ["adam_direction"], [1, 1]), "invalid_argument", "is a tuple"),
    (lambda a: _core.predict(a, [()], [1, 1]), "invalid_argument", "empty prediction term"),
    (lambda a: _core.fit_prediction(a, a[:-1], [("adam_direction", a, a)]), "size_mismatch",
     "reference does not match"),
])
def test_bad_prediction_input_raises_tpde_error(call, code, words):
    a = np.ones(8, np.float32)
    with pytest.raises(tpde.TPDEError) as e:
        call(a)
    assert e.value.code == code and words in str(e.value)
