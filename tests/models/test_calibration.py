"""test_calibration.py — kiln's INT8 calibration (src/quant/) against a numpy reference of the same
algorithms, and against ONNX Runtime's calibrators where they compute the same thing.

The C side is driven through tests/unit/test_quant.c's driver mode:
    test_quant --amax all DATA.f32 [--batch N] [--percentile P] [--hist HIST.f64]
which feeds raw float32 to a kiln_observer N values at a time, prints the amax of every method,
and writes the observer's 2048-bin |x| histogram as raw float64.

What is checked
  * The histogram, including re-binning when a batch raises max|x|, is bit-identical to the numpy
    observer below (same float operations in the same order).
  * minmax, entropy (TensorRT EntropyCalibrator2 as docs/calibration.md states it), percentile and
    mse agree with the numpy implementations within one histogram bin; where they are further
    apart (a near-tie between distant candidates, decided by summation order) the C choice must be
    as good under the numpy objective (KL divergence, squared error) to 1e-9 relative.
  * minmax equals ONNX Runtime's MinMaxCalibrater(symmetric=True) exactly; percentile is within
    one kiln bin + one ORT bin of ORT's PercentileCalibrater(symmetric=True, num_bins=2048).
    Differences, documented in docs/calibration.md: ORT's percentile histogram spans
    [min|x|, max|x|] of the first batch and grows by whole bins of that width, and it returns the
    lower edge of the bin where the cumulative mass reaches p (kiln interpolates inside the bin);
    ORT then caps the threshold at the signed max(x). ORT's EntropyCalibrater is a different
    algorithm (a signed histogram, 128 bins by default, MXNet-style smoothing of P and Q, integer
    truncation of Q) and is not compared.
Data come from np.random.default_rng() unseeded (the seed is printed on failure), at awkward sizes.

Run:   pytest tests/models/test_calibration.py
Needs: $KILN_BUILD_DIR/tests/test_quant (default <repo>/build/tests/test_quant); numpy, onnx, onnxruntime.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kilnrun

BINS = 2048
LEVELS = 128
START = 128
KL_EPS = 1e-4
SEED = int(np.random.SeedSequence().entropy % (1 << 63))
RNG = np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def test_quant() -> Path:
    path = kilnrun.kiln_build_dir() / "tests" / "test_quant"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"test_quant not found or not executable: {path} (build it: cmake --build build "
                    f"--target test_quant; or set KILN_BUILD_DIR)", pytrace=False)
    return path


# ---- the numpy reference ------------------------------------------------------------------------

class NpObserver:
    """kiln_observer in numpy: |x| histogram over [0, max|x|], re-binned proportionally."""

    def __init__(self):
        self.hist = np.zeros(BINS)
        self.max_abs = 0.0
        self.count = 0
        self.zeros = 0
        self.rebins = 0

    def _rebin(self, new_max: float) -> None:
        old, self.max_abs = self.max_abs, new_max
        if old == 0:
            return
        r = old / new_max
        j = np.arange(BINS, dtype=np.float64)
        lo, hi = j * r, (j + 1) * r
        k = np.minimum(lo.astype(np.int64), BINS - 1)
        split = (hi > k + 1) & (k + 1 < BINS)
        part = self.hist * np.where(split, ((k + 1) - lo) / (hi - lo), 1.0)
        rest = np.where(split, self.hist - part, 0.0)
        idx = np.empty(2 * BINS, np.int64)
        val = np.empty(2 * BINS)
        idx[0::2], idx[1::2] = k, np.minimum(k + 1, BINS - 1)
        val[0::2], val[1::2] = part, rest
        out = np.zeros(BINS)
        np.add.at(out, idx, val)  # in index order, as the C loop adds
        self.hist = out
        self.rebins += 1

    def feed(self, x: np.ndarray) -> None:
        a = np.abs(x.astype(np.float64))
        a = a[np.isfinite(a)]
        if a.size == 0:
            return
        babs = float(a.max())
        if self.count == 0:
            self.max_abs = babs
        elif babs > self.max_abs:
            self._rebin(babs)
        self.count += a.size
        self.zeros += int((a == 0).sum())
        if self.max_abs == 0:
            k = np.zeros(a.size, np.int64)
        else:
            k = np.minimum((a * (BINS / self.max_abs)).astype(np.int64), BINS - 1)
        self.hist = self.hist + np.bincount(k, minlength=BINS)

    @property
    def width(self) -> float:
        return self.max_abs / BINS


def np_kl(hist: np.ndarray, i: int, zeros: int = 0) -> float:
    """KL(P || Q) of candidate i, as calibrate.h defines it: exact zeros left out of bin 0."""
    hist = hist.copy()
    hist[0] = max(hist[0] - zeros, 0.0)
    h = hist[:i]
    g = np.arange(LEVELS)
    starts = (g * i + LEVELS - 1) // LEVELS
    ends = ((g + 1) * i + LEVELS - 1) // LEVELS
    mass = np.add.reduceat(h, starts)
    nz = np.add.reduceat((h > 0).astype(np.int64), starts)
    grp = np.repeat(g, ends - starts)
    q = np.where(h > 0, mass[grp] / np.maximum(nz[grp], 1), 0.0)
    p = h.copy()
    p[-1] += hist[i:].sum()
    q = np.where((p > 0) & (q == 0), KL_EPS, q)
    m = p > 0
    pn, qn = p[m] / p.sum(), q[m] / p.sum()  # both over P's total: Q lacks the clipped mass
    return float(np.sum(pn * np.log(pn / qn)))


def np_entropy(obs: NpObserver) -> tuple[float, dict[int, float]]:
    kl = {i: np_kl(obs.hist, i, obs.zeros) for i in range(START, BINS + 1)}
    best = min(kl, key=lambda i: (kl[i], i))
    return min((best + 0.5) * obs.width, obs.max_abs), kl


def np_percentile(obs: NpObserver, pct: float) -> float:
    h = obs.hist
    cum = np.cumsum(h)
    target = pct / 100.0 * cum[-1]
    k = int(np.argmax((h > 0) & (cum >= target)))
    prev = cum[k - 1] if k else 0.0
    frac = min(max((target - prev) / h[k], 0.0), 1.0)
    return min((k + frac) * obs.width, obs.max_abs)


def np_mse_errors(obs: NpObserver) -> dict[int, float]:
    w, h = obs.width, obs.hist
    k = np.nonzero(h)[0]
    c = (k + 0.5) * w
    cand = np.arange(START, BINS + 1)
    s = (cand * w) / 127.0
    q = np.minimum(np.rint(c[None, :] / s[:, None]), 127)
    d = c[None, :] - q * s[:, None]
    err = (h[k][None, :] * d * d).sum(axis=1)
    return dict(zip(cand.tolist(), err.tolist()))


def np_mse(obs: NpObserver) -> tuple[float, dict[int, float]]:
    err = np_mse_errors(obs)
    best = min(err, key=lambda i: (err[i], i))
    return min(best * obs.width, obs.max_abs), err


# ---- data and the C driver ----------------------------------------------------------------------

def make(dist: str, n: int) -> np.ndarray:
    if dist == "normal":
        x = RNG.normal(0.3, 2.0, n)
    elif dist == "laplace":
        x = RNG.laplace(0.0, 1.5, n)
    elif dist == "relu_normal":
        x = np.maximum(RNG.normal(0.5, 1.0, n), 0)
    elif dist == "outliers":
        x = RNG.normal(0.0, 1.0, n)
        m = max(1, n // 5000)
        x[RNG.choice(n, m, replace=False)] = RNG.uniform(20, 60, m) * RNG.choice([-1, 1], m)
    elif dist == "uniform":
        x = RNG.uniform(-3, 5, n)
    elif dist == "pixels":  # 17 grey levels scaled to [-1, 1], mostly background (-1): the digits' input
        x = (RNG.choice(17, n, p=np.r_[0.5, np.full(16, 0.5 / 16)]) / 16.0 - 0.5) * 2
    else:
        raise ValueError(dist)
    return x.astype(np.float32)


DISTS = ["normal", "laplace", "relu_normal", "outliers", "uniform", "pixels"]


def run_c(exe: Path, tmp: Path, x: np.ndarray, batch: int | None = None, pct: float | None = None):
    data, hist_path = tmp / "x.f32", tmp / "hist.f64"
    x.astype("<f4").tofile(data)
    cmd = [str(exe), "--amax", "all", str(data), "--hist", str(hist_path)]
    if batch:
        cmd += ["--batch", str(batch)]
    if pct is not None:
        cmd += ["--percentile", repr(pct)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}: {r.stderr}"
    out = {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", r.stdout)}
    return out, np.fromfile(hist_path, "<f8")


def batches(x: np.ndarray, batch: int | None):
    if not batch:
        yield x
        return
    for off in range(0, x.size, batch):
        yield x[off:off + batch]


def grow(x: np.ndarray, batch: int) -> np.ndarray:
    """Scales successive batches up, so that max|x| grows and the histogram is re-binned."""
    y = x.copy()
    for b, off in enumerate(range(0, y.size, batch)):
        y[off:off + batch] *= np.float32(1 + 0.15 * b)
    return y


# ---- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("mode", ["one_batch", "batches"])
def test_methods_match_numpy(test_quant, tmp_path, dist, mode):
    n = int(RNG.integers(40_000, 250_000))
    x = make(dist, n)
    batch = None
    if mode == "batches":
        batch = int(RNG.integers(3_000, 20_000))
        x = grow(x, batch)
    pct = float(RNG.choice([99.0, 99.9, 99.99, 99.999]))
    got, chist = run_c(test_quant, tmp_path, x, batch, pct)
    ref = NpObserver()
    for b in batches(x, batch):
        ref.feed(b)
    ctx = f"seed {SEED}, {dist}, n={n}, batch={batch}, p={pct}"
    assert got["max_abs"] == ref.max_abs and got["count"] == ref.count and got["zeros"] == ref.zeros, ctx
    assert got["rebins"] == ref.rebins, ctx
    if mode == "batches":
        assert ref.rebins > 0, ctx
    assert np.array_equal(chist, ref.hist), f"{ctx}: histograms differ at bins {np.nonzero(chist != ref.hist)[0][:10]}"
    w = ref.width

    assert got["minmax"] == ref.max_abs, ctx

    p_ref = np_percentile(ref, pct)
    assert abs(got["percentile"] - p_ref) <= 1e-9 * ref.max_abs, f"{ctx}: percentile {got['percentile']} vs {p_ref}"

    e_ref, kl = np_entropy(ref)
    if abs(got["entropy"] - e_ref) > w:
        i_c = int(round(got["entropy"] / w - 0.5))
        assert kl[i_c] <= min(kl.values()) * (1 + 1e-9) + 1e-15, \
            f"{ctx}: entropy {got['entropy']} (bin {i_c}, KL {kl[i_c]}) vs numpy {e_ref} (KL {min(kl.values())})"

    m_ref, err = np_mse(ref)
    if abs(got["mse"] - m_ref) > w:
        i_c = int(round(got["mse"] / w))
        assert err[i_c] <= min(err.values()) * (1 + 1e-9), \
            f"{ctx}: mse {got['mse']} (bin {i_c}, err {err[i_c]}) vs numpy {m_ref} (err {min(err.values())})"

    # discrete data: entropy finds nothing to clip (it once picked the first candidate, 1/16 of max|x|)
    if dist == "pixels" and mode == "one_batch":
        assert got["entropy"] == got["minmax"], ctx
    elif dist == "pixels":  # batches scaled up one after another: the largest levels are rare
        assert got["entropy"] > 0.8 * got["minmax"], ctx
    # sanity: clipping methods clip heavy tails and outliers
    if dist == "outliers":
        assert got["entropy"] < 0.5 * got["minmax"], ctx
        assert got["percentile"] < 0.5 * got["minmax"] or pct > 99.9, ctx  # 0.02 % are outliers


def test_nan_inf_excluded(test_quant, tmp_path):
    x = make("normal", 30_011)
    y = x.copy()
    y[RNG.choice(y.size, 40, replace=False)] = np.nan
    y[RNG.choice(y.size, 7, replace=False)] = np.inf
    y[RNG.choice(y.size, 5, replace=False)] = -np.inf
    got, hist = run_c(test_quant, tmp_path, y)
    nan = int(np.isnan(y).sum())
    inf = int(np.isinf(y).sum())
    assert got["nan"] == nan and got["inf"] == inf and got["count"] == y.size - nan - inf
    ref = NpObserver()
    ref.feed(y)
    assert np.array_equal(hist, ref.hist) and got["max_abs"] == ref.max_abs


def quant_error(x: np.ndarray, amax: float) -> float:
    """Mean squared error of int8 quantize/dequantize with scale amax / 127 (float32, as kiln does)."""
    s = np.float32(amax / 127)
    q = np.clip(np.rint(x / s), -128, 127)
    return float(np.mean((x.astype(np.float64) - (q * s).astype(np.float64)) ** 2))


@pytest.mark.parametrize("dist", ["normal", "laplace", "relu_normal"])
def test_batched_close_to_one_batch(test_quant, tmp_path, dist):
    """Re-binning blurs the histogram a little: fed in 23 batches, minmax is exact, percentile
    stays within a few bins, mse (flat near its optimum) within 2 % in actual quantization error,
    and entropy within 25 % on normal data. On Laplace data the KL curve is ragged in the sparse
    tail (bins holding 0 or 1 values), so that its argmin jumps between distant candidates from
    one sample to the next, batched or not: there it is only checked to clip little."""
    x = make(dist, 200_003)
    x[:9_001] *= np.float32(0.3)  # the first batch has a small max: later ones re-bin
    one, _ = run_c(test_quant, tmp_path, x)
    many, _ = run_c(test_quant, tmp_path, x, 9_001)
    assert many["rebins"] > 0
    w = one["bin_width"]
    assert one["minmax"] == many["minmax"]
    assert abs(one["percentile"] - many["percentile"]) <= 4 * w, f"seed {SEED}: {one} vs {many}"
    for m, slack in (("mse", 1.02), ("entropy", 1.25)):
        if m == "entropy" and dist == "laplace":
            assert many[m] >= np.quantile(np.abs(x), 0.999), f"seed {SEED}: {many}"
            continue
        e1, e2 = quant_error(x, one[m]), quant_error(x, many[m])
        assert e2 <= slack * e1, f"seed {SEED}: {m} {one[m]} -> error {e1}, batched {many[m]} -> {e2}"


# ---- ONNX Runtime ------------------------------------------------------------------------------

def identity_model(path: Path) -> None:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N"])
    g = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "calib", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


class Reader:
    def __init__(self, parts):
        self.parts = iter(parts)

    def get_next(self):
        return next(({"X": p} for p in self.parts), None)


def ort_range(tmp: Path, method, parts, **extra):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator  # noqa: F401
    model = tmp / "id.onnx"
    identity_model(model)
    cal = create_calibrator(model, augmented_model_path=str(tmp / "aug.onnx"), calibrate_method=method,
                            extra_options=extra)
    cal.collect_data(Reader(parts))
    lo, hi = cal.compute_data()["X"].range_value
    return float(np.asarray(lo).reshape(-1)[0]), float(np.asarray(hi).reshape(-1)[0])


@pytest.mark.parametrize("dist", DISTS)
def test_minmax_matches_ort(test_quant, tmp_path, dist):
    from onnxruntime.quantization.calibrate import CalibrationMethod
    x = make(dist, int(RNG.integers(10_000, 100_000)))
    batch = int(RNG.integers(1_000, 9_000))
    got, _ = run_c(test_quant, tmp_path, x, batch)
    lo, hi = ort_range(tmp_path, CalibrationMethod.MinMax, list(batches(x, batch)), symmetric=True)
    assert -lo == hi == got["minmax"], f"seed {SEED}: ORT ({lo}, {hi}), kiln {got['minmax']}"


@pytest.mark.parametrize("dist", ["normal", "laplace", "relu_normal", "outliers"])
@pytest.mark.parametrize("pct", [99.0, 99.9, 99.99])
def test_percentile_close_to_ort(test_quant, tmp_path, dist, pct):
    from onnxruntime.quantization.calibrate import CalibrationMethod
    x = make(dist, int(RNG.integers(100_000, 300_000)))
    got, _ = run_c(test_quant, tmp_path, x, pct=pct)
    lo, hi = ort_range(tmp_path, CalibrationMethod.Percentile, [x], symmetric=True, num_bins=BINS, percentile=pct)
    a = np.abs(x.astype(np.float64))
    w_kiln, w_ort = a.max() / BINS, (a.max() - a.min()) / BINS
    # ORT's symmetric range is (-t, t) with the low end then raised to min(x) (0 after a ReLU) and
    # the high end capped at max(x); its amax is the larger magnitude.
    assert hi > 0 and lo <= 0 and (-lo == hi or lo == float(x.min())), (lo, hi)
    ort = max(-lo, hi)
    assert abs(got["percentile"] - ort) <= w_kiln + w_ort, \
        f"seed {SEED}: {dist} p={pct}: kiln {got['percentile']}, ORT {ort}, bins {w_kiln} / {w_ort}"
