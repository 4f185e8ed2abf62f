"""test_calibrate_cli.py — `kiln calibrate`: the calibration driver (src/quant/collect.c), its data
sources (src/quant/calib_data.c) and the command (tools/cmd_calibrate.c), end to end.

What is checked
  * For each method, the cache parses (kiln's header "KILN-<version>-<algorithm> fingerprint=<16 hex>",
    then "name: <8 hex>" lines), holds the graph input and every Conv/Relu output, and each scale is
    float32(amax / 127) of the JSON report's amax for that method.
  * minmax amax equals max|x| over the data, as ONNX Runtime computes the same tensors (exposed as
    graph outputs): exactly for the graph input, to float32 rounding (rtol 1e-5) for activations,
    since kiln's reference Conv sums in another order than ORT's.
  * The JSON report: source, counts, per-tensor min/max/max|x|, all four amax, scale and its hex.
  * Batching (--calib-batch, a partial last batch kept only for a dynamic batch dim), --calib-max,
    inputs with initializers left unbound, determinism (same bits twice).
  * A folder of .npy (stacked or concatenated samples) or .npz files, and an image folder (PNG and
    BMP written here by hand: PIL may be missing), give the same report as the equivalent npz;
    resize + center crop match a numpy version of PIL's antialiased bilinear resampling and
    torchvision's Resize/CenterCrop rules; layout=nhwc and order=bgr. kiln build --int8 --calib-images
    gives the same cache as kiln calibrate and the same engine as a build from that cache.
  * Errors are one line naming the file and input, exit 1 (2 for usage): a missing input name, a
    wrong per-sample shape, a wrong dtype, unequal sample counts, an empty folder, a corrupt PNG, a
    fixed batch dim that the batch does not fit. The cache is written atomically: a failed run
    leaves an existing cache untouched and no temporary file.
Data come from np.random.default_rng() unseeded (the seed is printed on failure), never zeros.

Run:   pytest tests/models/test_calibrate_cli.py
Needs: $KILN_BUILD_DIR/kiln built with stb_image (KILN_HAVE_STB) for the image tests; numpy, onnx,
onnxruntime.
"""
from __future__ import annotations

import json
import os
import pty
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

SEED = int(np.random.SeedSequence().entropy % (1 << 63))
RNG = np.random.default_rng(SEED)
METHODS = ("minmax", "entropy", "percentile", "mse")
CACHE_ALGORITHMS = {"minmax": "MinMaxCalibration", "entropy": "EntropyCalibration2",
                    "percentile": "PercentileCalibration", "mse": "MSECalibration"}
TENSORS = ["x", "c1", "r1", "c2", "y"]  # input, Conv, Relu, Conv, Relu
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# ---- models and data ----------------------------------------------------------------------------

def cnn(batch: int | str = "N", h: int = 8, w: int = 8, nhwc: bool = False) -> onnx.ModelProto:
    """x -> Conv(3->4, 3x3, pad 1) -> Relu -> Conv(4->2, 3x3) -> Relu -> y; nhwc puts a Transpose first."""
    w1 = (RNG.standard_normal((4, 3, 3, 3)) * 0.5).astype(np.float32)
    b1 = RNG.standard_normal(4).astype(np.float32)
    w2 = (RNG.standard_normal((2, 4, 3, 3)) * 0.5).astype(np.float32)
    nodes = []
    conv_in = "x"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2], name="to_nchw"))
        conv_in = "xt"
    nodes += [helper.make_node("Conv", [conv_in, "W1", "B1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
              helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
              helper.make_node("Conv", ["r1", "W2"], ["c2"], name="conv2"),
              helper.make_node("Relu", ["c2"], ["y"], name="relu2")]
    shape = [batch, h, w, 3] if nhwc else [batch, 3, h, w]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(b1, "B1"),
                           numpy_helper.from_array(w2, "W2")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def save_model(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, str(path))
    return path


def samples(n: int, shape=(3, 8, 8)) -> np.ndarray:
    x = RNG.standard_normal((n, *shape)).astype(np.float32)
    x[x == 0] = 0.5  # never zeros
    return x


def ort_values(m: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, list[np.ndarray]]:
    """Every named value of m (graph inputs included) for each feed, computed by ONNX Runtime."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    outs = {o.name for o in m2.graph.output}
    inputs = {i.name for i in m2.graph.input}
    for n in names:
        if n not in outs and n not in inputs:
            m2.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    res: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for f in feeds:
        want = [n for n in names if n not in inputs]
        got = dict(zip(want, sess.run(want, f)))
        for n in names:
            res[n].append(f[n] if n in inputs else got[n])
    return res


def png_bytes(img: np.ndarray) -> bytes:
    """A minimal PNG (8-bit grey, RGB or RGBA; filter 0 on every row) from an HxWxC uint8 array."""
    h, w, c = img.shape
    color = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def corrupt_png_bytes(h: int = 8, w: int = 8) -> bytes:
    """A PNG whose header is fine and whose image data is not a zlib stream (CRCs correct)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    junk = bytes(RNG.integers(1, 256, 64, dtype=np.uint8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", b"\x78\xff" + junk) + chunk(b"IEND", b""))


def bmp_bytes(img: np.ndarray) -> bytes:
    """A 24-bit BMP (bottom-up BGR rows padded to 4 bytes) from an HxWx3 uint8 array."""
    h, w, _ = img.shape
    row = w * 3
    pad = (4 - row % 4) % 4
    data = b"".join(img[y, :, ::-1].tobytes() + b"\x00" * pad for y in range(h - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return header + info + data


def random_image(h: int, w: int, c: int = 3) -> np.ndarray:
    return RNG.integers(1, 256, (h, w, c), dtype=np.uint8)


def image_order(root: Path) -> list[Path]:
    """The order kiln reads an image folder in: each directory's entries sorted by name (bytes),
    dot-names skipped, directories descended into where they sort."""
    out = []
    for name in sorted(os.listdir(root), key=os.fsencode):
        if name.startswith("."):
            continue
        p = root / name
        if p.is_dir():
            out += image_order(p)
        elif p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
            out.append(p)
    return out


def normalize(img: np.ndarray, mean=MEAN, std=STD, scale=np.float32(255)) -> np.ndarray:
    """(v / scale - mean) / std in float32, as kiln and torchvision's ToTensor + Normalize compute it."""
    return ((img.astype(np.float32) / np.float32(scale)) - mean) / std


def pil_coeffs(in_size: int, out_size: int) -> np.ndarray:
    """PIL's antialiased bilinear resampling weights (Resample.c precompute_coeffs), [out, in]."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    support, ss = fs, 1.0 / fs
    m = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = np.arange(xmin, xmax)
        wts = np.maximum(0.0, 1.0 - np.abs((x - center + 0.5) * ss))
        if wts.sum() != 0:
            wts = wts / wts.sum()
        m[xx, xmin:xmax] = wts
    return m


def torchvision_preprocess(img: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Resize(resize) (shorter side; PIL bilinear with antialias, in float) + CenterCrop(crop) +
    ToTensor + Normalize, HxWxC uint8 -> CxHxW float32."""
    h, w, _ = img.shape
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nh, nw = resize, int(resize * w / h)
    x = img.astype(np.float64)
    if (nh, nw) != (h, w):
        tmp = np.einsum("ow,hwc->hoc", pil_coeffs(w, nw), x).astype(np.float32).astype(np.float64)
        x = np.einsum("oh,hwc->owc", pil_coeffs(h, nh), tmp).astype(np.float32)
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    x = x[top:top + crop, left:left + crop].astype(np.float32)
    return normalize(x).transpose(2, 0, 1)


# ---- running kiln ---------------------------------------------------------------------------------

def calibrate(args: list, *, expect_ok: bool = True) -> kilnrun.KilnRun:
    r = kilnrun.run_kiln(["calibrate", *map(str, args)], timeout=120)
    if expect_ok:
        assert r.kind == "ok", f"seed {SEED}: kiln calibrate {args}: {r.describe()}\n{r.stderr}"
    return r


def report(args: list) -> dict:
    r = calibrate([*args, "--json"])
    return json.loads(r.stdout)


def parse_cache(path: Path) -> tuple[str, str, dict[str, str]]:
    lines = path.read_text().splitlines()
    m = re.fullmatch(r"KILN-(\d+\.\d+\.\d+)-(\w+) fingerprint=([0-9a-f]{16})", lines[0])
    assert m, f"bad cache header {lines[0]!r}"
    entries = {}
    for ln in lines[1:]:
        if not ln.strip():
            continue
        mm = re.fullmatch(r"(.+): ([0-9a-f]{8})", ln)
        assert mm, f"bad cache line {ln!r}"
        assert mm.group(1) not in entries, f"{mm.group(1)} twice in the cache"
        entries[mm.group(1)] = mm.group(2)
    return m.group(2), m.group(3), entries


def scale_hex(amax: float) -> str:
    s = np.float32(amax / 127.0) if amax > 0 else np.float32(1.0)
    return f"{struct.unpack('>I', struct.pack('>f', s))[0]:08x}"


def tensors(rep: dict) -> dict[str, dict]:
    return {t["name"]: t for t in rep["tensors"]}


def assert_one_line_error(r: kilnrun.KilnRun, *needles: str, rc: int = 1) -> None:
    assert r.kind in ("error", "unsupported"), f"expected a failure, got {r.describe()}"
    assert r.returncode == rc, r.describe()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {r.stderr!r}"
    assert r.stdout == "", f"nothing on stdout on failure, got {r.stdout!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


# ---- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory, kiln):
    d = tmp_path_factory.mktemp("calib")
    model = cnn()
    x = samples(10)
    save_model(model, d / "cnn.onnx")
    kilnrun.save_npz(d / "calib.npz", {"x": x})
    ref = ort_values(model, [{"x": x[k:k + 1]} for k in range(len(x))], TENSORS)
    return {"dir": d, "model": model, "onnx": d / "cnn.onnx", "npz": d / "calib.npz", "x": x, "ref": ref}


# ---- the report and the cache ---------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_methods_cache_and_report(work, method):
    d = work["dir"]
    cache = d / f"{method}.cache"
    rep = report([work["onnx"], "--calib", work["npz"], "--method", method, "--cache", cache])
    algorithm, fp, entries = parse_cache(cache)
    assert algorithm == CACHE_ALGORITHMS[method] == rep["cache_algorithm"]
    assert fp == rep["fingerprint"]
    assert rep["method"] == method and rep["cache"] == str(cache)
    assert list(entries) == TENSORS, f"cache entries {list(entries)}"
    ts = tensors(rep)
    assert [t["name"] for t in rep["tensors"]] == TENSORS
    for name in TENSORS:
        t = ts[name]
        amax = t["amax"]
        assert set(amax) == set(METHODS)
        for m in METHODS:
            assert 0 < amax[m] <= t["max_abs"], f"seed {SEED}: {name} {m} amax {amax[m]} vs max|x| {t['max_abs']}"
        assert entries[name] == t["scale_hex"] == scale_hex(amax[method]), f"seed {SEED}: {name}"
        assert np.float32(t["scale"]) == np.float32(amax[method] / 127.0)
        # minmax is max|x| over the data, as ONNX Runtime computes these tensors
        vals = np.concatenate([v.ravel() for v in work["ref"][name]])
        exp = float(np.abs(vals).max())
        if name == "x":
            assert amax["minmax"] == t["max_abs"] == exp
            assert t["min"] == float(vals.min()) and t["max"] == float(vals.max())
        else:
            assert amax["minmax"] == pytest.approx(exp, rel=1e-5), f"seed {SEED}: {name}"
            assert t["min"] == pytest.approx(float(vals.min()), rel=1e-5, abs=1e-6)
            assert t["max"] == pytest.approx(float(vals.max()), rel=1e-5, abs=1e-6)
        assert t["values"] == vals.size and t["nan"] == 0 and t["inf"] == 0 and t["batches"] == 10
        assert t["kind"] == ("input" if name == "x" else "activation")
        assert t["op"] == {"x": "", "c1": "Conv", "r1": "Relu", "c2": "Conv", "y": "Relu"}[name]
        assert t["dtype"] == "f32"
    src = rep["source"]
    assert src == {"kind": "npz", "path": str(work["npz"]), "available": 10, "samples": 10, "batches": 10,
                   "batch_size": 1, "ignored": []}
    assert rep["percentile"] == 99.99


def test_text_table_and_quiet_stderr(work, tmp_path):
    cache = tmp_path / "t.cache"
    r = calibrate([work["onnx"], "--calib", work["npz"], "--cache", cache])
    assert r.stderr == "", f"stderr is not a terminal: no progress expected, got {r.stderr!r}"
    lines = r.stdout.splitlines()
    assert "10 sample(s)" in lines[0] and "10 batch(es) of 1" in lines[0]
    assert "entropy" in lines[1] and "EntropyCalibration2" in lines[1]
    header = next(ln for ln in lines if ln.startswith("tensor"))
    for col in ("values", "min", "max", "max|x|", "minmax", "entropy", "percentile", "mse", "scale"):
        assert col in header.split()
    rows = {ln.split()[0]: ln.split() for ln in lines if ln.split() and ln.split()[0] in TENSORS}
    assert list(rows) == TENSORS
    assert str(cache) in lines[-1]
    assert cache.read_text().startswith("KILN-")


def test_progress_on_a_terminal(work):
    """Progress goes to stderr when it is a terminal (a pty here), and the report stays on stdout."""
    master, slave = pty.openpty()
    try:
        p = subprocess.run([str(kilnrun.kiln_binary()), "calibrate", str(work["onnx"]), "--calib", str(work["npz"]),
                            "--method", "minmax"], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                           timeout=120)
        os.close(slave)
        slave = -1
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0
    assert b"calibrating: batch 10/10" in err, err
    assert b"calibrating" not in p.stdout


def test_deterministic(work, tmp_path):
    a, b = tmp_path / "a.cache", tmp_path / "b.cache"
    calibrate([work["onnx"], "--calib", work["npz"], "--cache", a, "--calib-batch", "3"])
    calibrate([work["onnx"], "--calib", work["npz"], "--cache", b, "--calib-batch", "3"])
    assert a.read_bytes() == b.read_bytes()


def test_batching_and_max(work, tmp_path):
    one = tensors(report([work["onnx"], "--calib", work["npz"]]))
    rep = report([work["onnx"], "--calib", work["npz"], "--calib-batch", "4"])
    # a dynamic batch dim: 4 + 4 + 2
    assert rep["source"]["batches"] == 3 and rep["source"]["samples"] == 10 and rep["source"]["batch_size"] == 4
    for name, t in tensors(rep).items():
        assert t["batches"] == 3
        for k in ("values", "min", "max", "max_abs"):
            assert t[k] == one[name][k], f"seed {SEED}: {name} {k}"
        assert t["amax"]["minmax"] == one[name]["amax"]["minmax"]
    # --calib-max keeps the first N samples
    rep = report([work["onnx"], "--calib", work["npz"], "--calib-max", "5", "--method", "minmax"])
    assert rep["source"]["samples"] == 5 and rep["source"]["available"] == 10
    ts = tensors(rep)
    for name in TENSORS:
        exp = max(float(np.abs(v).max()) for v in work["ref"][name][:5])
        assert ts[name]["amax"]["minmax"] == pytest.approx(exp, rel=1e-5), name


def test_fixed_batch_dim(work, tmp_path):
    m = cnn(batch=2)
    path = save_model(m, tmp_path / "b2.onnx")
    x = samples(5)
    kilnrun.save_npz(tmp_path / "c.npz", {"x": x})
    rep = report([path, "--calib", tmp_path / "c.npz", "--calib-batch", "2"])
    # the partial batch is dropped when the batch dim is fixed
    assert rep["source"]["batches"] == 2 and rep["source"]["samples"] == 4
    ref = ort_values(m, [{"x": x[0:2]}, {"x": x[2:4]}], TENSORS)
    ts = tensors(rep)
    assert ts["x"]["amax"]["minmax"] == float(np.abs(x[:4]).max())
    for name in TENSORS[1:]:
        exp = max(float(np.abs(v).max()) for v in ref[name])
        assert ts[name]["amax"]["minmax"] == pytest.approx(exp, rel=1e-5)
    r = calibrate([path, "--calib", tmp_path / "c.npz"], expect_ok=False)
    assert_one_line_error(r, "c.npz", "'x'", "[1,3,8,8]", "[2,3,8,8]", "a batch of 2 sample(s) would fit")


def test_optional_input_and_ignored_arrays(tmp_path):
    """A graph input with an initializer is left to its initializer unless the data gives it."""
    bias = np.full((1, 3, 1, 1), 0.25, np.float32)
    g = helper.make_graph([helper.make_node("Add", ["x", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(bias, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = save_model(m, tmp_path / "opt.onnx")
    x = samples(3, (3, 4, 4))
    kilnrun.save_npz(tmp_path / "a.npz", {"x": x, "extra": x[:, :1]})
    r = calibrate([path, "--calib", tmp_path / "a.npz", "--json"])
    assert "array 'extra' names no model input" in r.stderr
    rep = json.loads(r.stdout)
    assert rep["source"]["ignored"] == ["extra"]
    ts = tensors(rep)
    assert list(ts) == ["x", "s", "y"]
    assert ts["s"]["max"] == pytest.approx(float((x + bias).max()), rel=1e-6)
    b = RNG.uniform(1, 2, (3, 1, 3, 1, 1)).astype(np.float32)
    kilnrun.save_npz(tmp_path / "b.npz", {"x": x, "b": b})
    ts = tensors(report([path, "--calib", tmp_path / "b.npz"]))
    assert list(ts) == ["x", "b", "s", "y"]
    assert ts["b"]["max_abs"] == float(np.abs(b).max())
    assert ts["s"]["max"] == pytest.approx(float((x + b[:, 0]).max()), rel=1e-6)


# ---- other sources give the same report ----------------------------------------------------------

def same_tensors(a: dict, b: dict) -> None:
    ta, tb = a["tensors"], b["tensors"]
    assert [t["name"] for t in ta] == [t["name"] for t in tb]
    for x, y in zip(ta, tb):
        assert x == y, f"seed {SEED}: {x['name']}: {x} != {y}"


@pytest.mark.parametrize("kind", ["stacked", "concat", "npz"])
def test_npy_dir_matches_npz(work, tmp_path, kind):
    x = work["x"]
    d = tmp_path / "samples"
    d.mkdir()
    for k in range(len(x)):
        if kind == "stacked":
            np.save(d / f"s{k:03d}.npy", x[k])           # one sample [3,8,8]
        elif kind == "concat":
            np.save(d / f"s{k:03d}.npy", x[k:k + 1])     # a batch of one [1,3,8,8]
        else:
            kilnrun.save_npz(d / f"s{k:03d}.npz", {"x": x[k]})
    (d / "metadata.json").write_text("{}")  # not data: skipped
    a = report([work["onnx"], "--calib", work["npz"], "--calib-batch", "2"])
    b = report([work["onnx"], "--calib-dir", d, "--calib-batch", "2"])
    assert b["source"]["kind"] == "dir" and b["source"]["available"] == 10 and b["source"]["batches"] == 5
    same_tensors(a, b)


def write_images(root: Path, imgs: list[np.ndarray]) -> list[Path]:
    """Class folders of PNGs, one BMP among them; returns the paths in kiln's reading order."""
    for k, img in enumerate(imgs):
        cls = root / ("cat" if k % 2 else "dog") / ("sub" if k == 4 else "")
        cls.mkdir(parents=True, exist_ok=True)
        ext = "BMP" if k == 3 else "png"
        data = bmp_bytes(img) if ext == "BMP" else png_bytes(img)
        (cls / f"img_{k:02d}.{ext}").write_bytes(data)
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"not read: a dot-name")
    order = image_order(root)
    assert len(order) == len(imgs)
    return order


def decode_back(path: Path, imgs: list[np.ndarray]) -> np.ndarray:
    return imgs[int(re.search(r"img_(\d+)", path.name).group(1))]


def test_image_folder_matches_npz(work, tmp_path):
    imgs = [random_image(8, 8) for _ in range(6)]
    root = tmp_path / "images"
    order = write_images(root, imgs)
    x = np.stack([normalize(decode_back(p, imgs)).transpose(2, 0, 1) for p in order])
    kilnrun.save_npz(tmp_path / "eq.npz", {"x": x})
    spec = "mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw,scale=255"
    a = report([work["onnx"], "--calib", tmp_path / "eq.npz", "--calib-batch", "3"])
    b = report([work["onnx"], "--calib-images", root, "--calib-preprocess", spec, "--calib-batch", "3"])
    assert b["source"]["kind"] == "images" and b["source"]["samples"] == 6
    same_tensors(a, b)


def test_image_resize_crop_like_torchvision(work, tmp_path):
    sizes = [(12, 10), (9, 14), (10, 10), (20, 11), (8, 9)]
    imgs = [random_image(h, w) for h, w in sizes]
    root = tmp_path / "images"
    order = write_images(root, imgs)
    x = np.stack([torchvision_preprocess(decode_back(p, imgs), 9, 8) for p in order])
    spec = "resize=9,crop=8,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw,scale=255"
    rep = report([work["onnx"], "--calib-images", root, "--calib-preprocess", spec, "--method", "minmax"])
    ref = ort_values(work["model"], [{"x": x}], TENSORS)
    ts = tensors(rep)
    for name in TENSORS:
        v = ref[name][0]
        assert ts[name]["min"] == pytest.approx(float(v.min()), rel=1e-5, abs=1e-5), f"seed {SEED}: {name}"
        assert ts[name]["max"] == pytest.approx(float(v.max()), rel=1e-5, abs=1e-5), f"seed {SEED}: {name}"
        assert ts[name]["values"] == v.size


def test_image_nhwc_bgr(tmp_path):
    m = cnn(nhwc=True)
    path = save_model(m, tmp_path / "nhwc.onnx")
    imgs = [random_image(8, 8) for _ in range(3)]
    root = tmp_path / "images"
    order = write_images(root, imgs)
    mean, std = np.float32([0.5, 0.25, 0.125]), np.float32([0.5, 1.5, 2.0])
    x = np.stack([normalize(decode_back(p, imgs)[:, :, ::-1], mean, std, np.float32(1)) for p in order])
    kilnrun.save_npz(tmp_path / "eq.npz", {"x": x})
    a = report([path, "--calib", tmp_path / "eq.npz"])
    b = report([path, "--calib-images", root, "--calib-preprocess", "layout=nhwc,order=bgr,scale=1,mean=0.5:0.25:0.125,std=0.5:1.5:2"])
    same_tensors(a, b)


def test_build_from_image_folder(work, tmp_path):
    """kiln build --int8 --calib-images: the same image pipeline as kiln calibrate (handed to the builder
    as a kiln_calibrator), so the same cache bytes, and the engine rebuilt from that cache is the same."""
    imgs = [random_image(h, w) for h, w in [(12, 10), (9, 14), (10, 10), (20, 11), (8, 9), (11, 12)]]
    root = tmp_path / "images"
    write_images(root, imgs)
    spec = "resize=9,crop=8,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw"
    c1, c2 = tmp_path / "calibrate.cache", tmp_path / "build.cache"
    calibrate([work["onnx"], "--calib-images", root, "--calib-preprocess", spec, "--calib-batch", "2", "--method", "mse",
               "--cache", c1])
    a, b = tmp_path / "a.kiln", tmp_path / "b.kiln"
    common = ["build", work["onnx"], "--shapes", "x:1x3x8x8", "--int8"]
    r = kilnrun.run_kiln([*map(str, common), "-o", str(a), "--calib-images", str(root), "--calib-preprocess", spec,
                          "--calib-batch", "2", "--calib-method", "mse", "--calib-cache", str(c2)], timeout=120)
    assert r.kind == "ok", r.stderr
    assert c1.read_text().splitlines() == c2.read_text().splitlines()
    r = kilnrun.run_kiln([*map(str, common), "-o", str(b), "--calib-cache", str(c1)], timeout=120)
    assert r.kind == "ok", r.stderr
    assert a.read_bytes() == b.read_bytes()
    r = kilnrun.run_kiln(["inspect", str(a), "--json"])
    prec = {l["name"]: l["precision"] for l in json.loads(r.stdout)["layers"]}
    assert prec["conv1"] == prec["conv2"] == "int8", prec
    # a bad image fails the build with the image's own error, one line
    (root / "cat" / "zz_broken.png").write_bytes(corrupt_png_bytes())
    r = kilnrun.run_kiln([*map(str, common), "-o", str(tmp_path / "x.kiln"), "--calib-images", str(root),
                          "--calib-preprocess", spec], timeout=120)
    assert_one_line_error(r, "zz_broken.png")
    r = kilnrun.run_kiln([*map(str, common), "-o", str(tmp_path / "x.kiln"), "--calib-images", str(root),
                          "--calib", str(work["npz"])], timeout=120)
    assert_one_line_error(r, "exclude", rc=2)
    r = kilnrun.run_kiln([*map(str, common), "-o", str(tmp_path / "x.kiln"), "--calib", str(work["npz"]),
                          "--calib-preprocess", spec], timeout=120)
    assert_one_line_error(r, "--calib-images", rc=2)


# ---- errors ----------------------------------------------------------------------------------------

def test_error_missing_input_name(work, tmp_path):
    kilnrun.save_npz(tmp_path / "bad.npz", {"input": work["x"]})
    r = calibrate([work["onnx"], "--calib", tmp_path / "bad.npz"], expect_ok=False)
    assert_one_line_error(r, "bad.npz", "'x'", "'input'")


def test_error_wrong_sample_shape(work, tmp_path):
    kilnrun.save_npz(tmp_path / "bad.npz", {"x": samples(4, (3, 9, 8))})
    r = calibrate([work["onnx"], "--calib", tmp_path / "bad.npz"], expect_ok=False)
    assert_one_line_error(r, "bad.npz", "'x'", "[1,3,9,8]", "[N,3,8,8]")
    kilnrun.save_npz(tmp_path / "rank.npz", {"x": samples(4, (8, 8))})
    r = calibrate([work["onnx"], "--calib", tmp_path / "rank.npz"], expect_ok=False)
    assert_one_line_error(r, "rank.npz", "'x'", "rank")


def test_error_wrong_dtype(work, tmp_path):
    kilnrun.save_npz(tmp_path / "f64.npz", {"x": work["x"].astype(np.float64)})
    r = calibrate([work["onnx"], "--calib", tmp_path / "f64.npz"], expect_ok=False)
    assert_one_line_error(r, "f64.npz", "'x'", "f64", "f32")


def test_error_dir_sample_mismatch(work, tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    np.save(d / "a.npy", work["x"][0])
    np.save(d / "b.npy", samples(1, (3, 8, 9))[0])
    r = calibrate([work["onnx"], "--calib-dir", d, "--calib-batch", "2"], expect_ok=False)
    assert_one_line_error(r, str(d / "b.npy"), "[3,8,9]")


def test_error_empty_folders(work, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "readme.txt").write_text("no data here")
    r = calibrate([work["onnx"], "--calib-dir", d], expect_ok=False)
    assert_one_line_error(r, str(d), "no .npy or .npz files")
    r = calibrate([work["onnx"], "--calib-images", d], expect_ok=False)
    assert_one_line_error(r, str(d), "no images")
    r = calibrate([work["onnx"], "--calib-dir", tmp_path / "missing"], expect_ok=False)
    assert_one_line_error(r, str(tmp_path / "missing"))


def test_error_corrupt_png(work, tmp_path):
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "a" / "good.png").write_bytes(png_bytes(random_image(8, 8)))
    (root / "a" / "zbad.png").write_bytes(corrupt_png_bytes())
    cache = tmp_path / "keep.cache"
    cache.write_text("previous cache\n")
    r = calibrate([work["onnx"], "--calib-images", root, "--cache", cache], expect_ok=False)
    assert_one_line_error(r, str(root / "a" / "zbad.png"))
    # a failed run leaves an existing cache untouched and nothing beside it
    assert cache.read_text() == "previous cache\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "keep.cache"]
    # files beyond --calib-max are not read
    rep = report([work["onnx"], "--calib-images", root, "--calib-max", "1"])
    assert rep["source"]["samples"] == 1 and rep["source"]["available"] == 2
    # not an image at all: refused before anything runs
    (root / "a" / "zbad.png").write_bytes(b"GIF89a garbage")
    r = calibrate([work["onnx"], "--calib-images", root], expect_ok=False)
    assert_one_line_error(r, str(root / "a" / "zbad.png"))


def test_error_unequal_sample_counts(tmp_path):
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "add.onnx")
    kilnrun.save_npz(tmp_path / "c.npz", {"a": samples(5, (4,)), "b": samples(4, (4,))})
    r = calibrate([path, "--calib", tmp_path / "c.npz"], expect_ok=False)
    assert_one_line_error(r, "c.npz", "'b'", "'a'")
    # images need a model with one required input
    root = tmp_path / "img"
    root.mkdir()
    (root / "i.png").write_bytes(png_bytes(random_image(4, 4)))
    r = calibrate([path, "--calib-images", root], expect_ok=False)
    assert_one_line_error(r, str(root), "one required input")


def test_cache_write_failure_leaves_nothing(work, tmp_path):
    target = tmp_path / "no_such_dir" / "out.cache"
    r = calibrate([work["onnx"], "--calib", work["npz"], "--cache", target], expect_ok=False)
    assert_one_line_error(r, str(target))
    assert not target.parent.exists()


def test_usage_errors(work, tmp_path):
    r = calibrate([work["onnx"]], expect_ok=False)
    assert r.returncode == 2 and "exactly one of" in r.stderr
    r = calibrate([work["onnx"], "--calib", work["npz"], "--calib-dir", tmp_path], expect_ok=False)
    assert r.returncode == 2
    for bad in (["--calib-batch", "0"], ["--calib-max", "x"], ["--method", "kl"], ["--percentile", "101"],
                ["--calib-preprocess", "resize=224"]):
        r = calibrate([work["onnx"], "--calib", work["npz"], *bad], expect_ok=False)
        assert r.returncode == 2, f"{bad}: {r.describe()}"
        assert len(r.stderr.strip().splitlines()) == 1
    r = calibrate([work["onnx"], "--calib-images", tmp_path, "--calib-preprocess", "resize=abc"], expect_ok=False)
    assert_one_line_error(r, "resize=abc")
    r = calibrate([work["onnx"], "--calib-images", tmp_path, "--calib-preprocess", "gamma=2"], expect_ok=False)
    assert_one_line_error(r, "unknown key 'gamma'")
    r = calibrate(["--help"])
    assert "--calib-preprocess" in r.stdout


def test_nan_and_inf_tensors(tmp_path):
    """NaN/Inf are counted apart; a tensor with no finite value has no amax and stays out of the cache."""
    g = helper.make_graph([helper.make_node("Log", ["x"], ["lg"]),                    # NaN for x < 0
                           helper.make_node("Abs", ["x"], ["ab"]),
                           helper.make_node("Neg", ["ab"], ["ng"]),
                           helper.make_node("Sqrt", ["ng"], ["nan"]),                 # all NaN
                           helper.make_node("Add", ["lg", "x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("nan", TensorProto.FLOAT, None)])
    path = save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "n.onnx")
    x = samples(3, (16,))
    kilnrun.save_npz(tmp_path / "c.npz", {"x": x})
    cache = tmp_path / "n.cache"
    r = calibrate([path, "--calib", tmp_path / "c.npz", "--json", "--cache", cache])
    assert "saw no finite value" in r.stderr and "'nan'" in r.stderr
    assert "saw NaN or Inf" in r.stderr and "'lg'" in r.stderr
    ts = tensors(json.loads(r.stdout))
    assert ts["nan"]["nan"] == x.size and ts["nan"]["values"] == 0
    assert ts["nan"]["amax"] == {m: None for m in METHODS} and ts["nan"]["scale"] is None
    assert ts["lg"]["nan"] == int((x < 0).sum()) and ts["lg"]["values"] == int((x > 0).sum())
    _, _, entries = parse_cache(cache)
    assert "nan" not in entries and {"x", "lg", "ab", "ng", "y"} <= set(entries)
