"""study.py — how much INT8 costs in accuracy, per calibration method, kiln against ONNX Runtime.

Trains two small classifiers on scikit-learn's 8x8 digits with numpy alone (train.py: a CNN and a
one-block transformer), exports them to ONNX, and measures on a held-out labelled split of 500 images:

  * FP32 top-1, run by kiln and by ONNX Runtime;
  * INT8 top-1 of kiln engines (kiln build --int8) for each calibration method: minmax, entropy,
    percentile (99.99), mse, all calibrated on the same 256 training images in batches of 32;
  * INT8 top-1 of ONNX Runtime's static quantization of the same models (quantize_static, QDQ
    format, per-channel weights, symmetric int8 activations and weights, same calibration batches),
    with each of its methods (MinMax, Entropy, Percentile), run by ONNX Runtime — and the same QDQ
    models built by kiln as explicitly quantized engines;
  * per tensor, the amax kiln's four methods choose beside the amax ONNX Runtime's scales imply.

and writes it all to docs/int8-accuracy.md (generated: edit this script, not that file). The trained
models go to tests/data/int8_study/, where tests/models/test_int8_accuracy.py checks the accuracy
target (best INT8 within 1 point of FP32) on every CI run without training.

    python bench/int8_study/study.py                 train (about 20 s), evaluate, write the doc
    python bench/int8_study/study.py --no-train      evaluate the committed models
Needs: the kiln binary ($KILN_BUILD_DIR/kiln, default build/kiln), numpy, onnx, onnxruntime, scikit-learn.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import train as T  # noqa: E402  (first: it sets the BLAS thread count before numpy loads)

import numpy as np  # noqa: E402
import onnx  # noqa: E402

METHODS = ["minmax", "entropy", "percentile", "mse"]
ORT_METHODS = ["MinMax", "Entropy", "Percentile"]
CALIB_BATCH = 32


def kiln(binary: Path, *args) -> subprocess.CompletedProcess:
    r = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"kiln {' '.join(map(str, args))}: {r.stderr.strip()}")
    return r


def save_npz(path: Path, x: np.ndarray) -> Path:
    np.savez(path, x=x.astype(np.float32))
    return path


def top1(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean() * 100)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class Runner:
    """kiln builds and runs in a work directory; test and calibration data as .npz files there."""

    def __init__(self, binary: Path, work: Path, calib: np.ndarray, test: np.ndarray):
        self.bin, self.work = binary, work
        self.calib = save_npz(work / "calib.npz", calib)
        self.test = save_npz(work / "test.npz", test)
        self.shapes = f"x:{len(test)}x1x8x8"

    def logits(self, model: Path, tag: str, *build_args) -> np.ndarray:
        eng, out = self.work / f"{tag}.kiln", self.work / f"{tag}.out.npz"
        kiln(self.bin, "build", model, "-o", eng, "--shapes", self.shapes, *build_args)
        kiln(self.bin, "run", eng, "--inputs", self.test, "--output", out)
        return np.load(out)["logits"]

    def int8(self, model: Path, tag: str, method: str) -> np.ndarray:
        return self.logits(model, tag, "--int8", "--calib", self.calib, "--calib-batch", CALIB_BATCH,
                           "--calib-method", method)

    def amax(self, model: Path) -> list[dict]:
        rep = json.loads(kiln(self.bin, "calibrate", model, "--calib", self.calib, "--calib-batch", CALIB_BATCH,
                              "--json").stdout)
        return rep["tensors"]


def ort_session(path: Path, optimize: bool = True):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_quantize(model: Path, out: Path, calib: np.ndarray, method: str) -> Path:
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib[i:i + CALIB_BATCH]} for i in range(0, len(calib), CALIB_BATCH)])

        def get_next(self):
            return next(self.it, None)

    q.quantize_static(str(model), str(out), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                      calibrate_method=getattr(q.CalibrationMethod, method),
                      extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return out


def ort_amax(qdq: Path) -> dict[str, float]:
    """amax = scale * 127 of every activation a QuantizeLinear of ORT's QDQ model quantizes."""
    m = onnx.load(str(qdq))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[1] in inits:
            s = inits[n.input[1]]
            if s.size == 1:
                out[n.input[0]] = float(s.reshape(-1)[0]) * 127
    return out


def evaluate(name: str, model: Path, run: Runner, test_y: np.ndarray, work: Path, log) -> dict:
    res = {"rows": [], "amax": None}
    t0 = time.time()
    fp32 = run.logits(model, f"{name}_fp32")
    ort32 = ort_session(model).run(None, {"x": np.load(run.test)["x"]})[0]
    acc32 = top1(fp32, test_y)
    pred32 = fp32.argmax(1)

    def row(label, runs_on, logits):
        res["rows"].append({"calibration": label, "runs_on": runs_on, "top1": top1(logits, test_y),
                            "delta": top1(logits, test_y) - acc32, "agree": float((logits.argmax(1) == pred32).mean() * 100),
                            "cosine": cosine(logits, fp32)})

    res["fp32"] = acc32
    res["fp32_ort"] = top1(ort32, test_y)
    res["fp32_ort_cosine"] = cosine(ort32, fp32)
    for m in METHODS:
        row(f"kiln {m}" + (" (99.99)" if m == "percentile" else ""), "kiln", run.int8(model, f"{name}_{m}", m))
    ort_scales = {}
    for m in ORT_METHODS:
        qdq = ort_quantize(model, work / f"{name}_ort_{m}.onnx", np.load(run.calib)["x"], m)
        label = f"ORT {m}" + (" (99.999)" if m == "Percentile" else "")
        row(label, "ONNX Runtime", ort_session(qdq).run(None, {"x": np.load(run.test)["x"]})[0])
        row(label, "ONNX Runtime, Q/DQ as written", ort_session(qdq, False).run(None, {"x": np.load(run.test)["x"]})[0])
        row(label, "kiln (its Q/DQ model)", run.logits(qdq, f"{name}_ortqdq_{m}"))
        ort_scales[m] = ort_amax(qdq)
    res["amax"] = (run.amax(model), ort_scales)
    log(f"{name}: evaluated in {time.time() - t0:.1f} s")
    return res


# ---- the document ----------------------------------------------------------------------------------

def fmt(v: float, nd=4) -> str:
    return f"{v:.{nd}g}" if v == v else "-"


def write_doc(path: Path, results: dict, info: dict) -> None:
    L = ["# INT8 accuracy: kiln's calibrators and ONNX Runtime's", "",
         "<!-- generated by bench/int8_study/study.py: edit the script, not this file -->", "",
         "Two small classifiers trained on scikit-learn's 8x8 digits (1797 images, 10 classes) with numpy",
         "alone (`bench/int8_study/train.py`): a CNN (Conv 16 → Relu → Conv 32 stride 2 → Relu → Gemm) and a",
         "one-block transformer (rows of the image as 8 tokens; embedding, position embedding, pre-LayerNorm",
         "single-head attention and a Relu MLP with residuals, mean pooling, Gemm). Accuracy is top-1 on a",
         f"held-out split of {info['n_test']} labelled images never used in training. INT8 engines are",
         f"calibrated on {info['n_calib']} training images in batches of {CALIB_BATCH}; ONNX Runtime's",
         "`quantize_static` gets the same batches (QDQ format, per-channel weights, symmetric int8",
         "activations and weights, otherwise its defaults). kiln quantizes Conv, MatMul and Gemm",
         "(per-channel int8 weights, per-tensor int8 activations; the rest stays FP32); ONNX Runtime's",
         "quantizer also puts Q/DQ around other ops (Add, Relu, Softmax, ...). \"kiln (its Q/DQ model)\" is",
         "ONNX Runtime's quantized model built by kiln as an explicitly quantized engine: the same scales,",
         "kiln's integer kernels. \"ONNX Runtime\" runs it with its graph optimizations (which replace",
         "Q/DQ patterns by its integer kernels, as deployed); \"Q/DQ as written\" without them (float",
         "arithmetic on the dequantized values: the model's exact meaning). Columns: top-1 (%), its change",
         "from FP32 (percentage points), how often the INT8 prediction equals the FP32 one, and the cosine",
         "of INT8 and FP32 logits.", ""]
    for name, r in results.items():
        L += [f"## {name}", "",
              f"FP32 top-1: **{r['fp32']:.2f} %** (kiln), {r['fp32_ort']:.2f} % (ONNX Runtime; logit cosine "
              f"{r['fp32_ort_cosine']:.6f}).", "",
              "| calibration | runs on | top-1 % | Δ pp | agrees with FP32 % | logit cosine |",
              "|---|---|---:|---:|---:|---:|"]
        for x in r["rows"]:
            L.append(f"| {x['calibration']} | {x['runs_on']} | {x['top1']:.2f} | {x['delta']:+.2f} | {x['agree']:.2f} | "
                     f"{x['cosine']:.5f} |")
        best = max((x for x in r["rows"] if x["runs_on"] == "kiln"), key=lambda x: x["top1"])
        L += ["", f"Best kiln calibrator: {best['calibration']}, {best['delta']:+.2f} points from FP32.", ""]
        tensors, ort = r["amax"]
        L += ["Activation amax per tensor (the int8 scale is amax / 127): kiln's four methods on the FP32",
              "graph's tensors, and what ONNX Runtime's scales imply (scale × 127) where its quantizer put a",
              "QuantizeLinear on that tensor (\"-\": it did not).", "",
              "| tensor | op | max\\|x\\| | kiln minmax | kiln entropy | kiln percentile | kiln mse | " +
              " | ".join(f"ORT {m}" for m in ORT_METHODS) + " |",
              "|---|---|" + "---:|" * (5 + len(ORT_METHODS))]
        for t in tensors:
            a = t["amax"]
            L.append(f"| {t['name']} | {t['op'] or 'input'} | {fmt(t['max_abs'])} | " +
                     " | ".join(fmt(a[m]) if a[m] is not None else "-" for m in METHODS) + " | " +
                     " | ".join(fmt(ort[m][t["name"]]) if t["name"] in ort[m] else "-" for m in ORT_METHODS) + " |")
        L.append("")
    L += ["## Reading it", "",
          "* minmax and ORT MinMax compute the same thing (the test suite checks them equal to the bit), so",
          "  their rows differ only by what each quantizes: ORT also quantizes the inputs and outputs of",
          "  Add, Softmax, LayerNorm's neighbours and the attention products.",
          "* ORT's Entropy is another algorithm than kiln's (TensorRT's EntropyCalibrator2, with exact zeros",
          "  left out and clipped values counted: see docs/calibration.md). Through `quantize_static` it",
          "  keeps its default of 128 histogram bins, which leaves it one candidate, the data's own range:",
          "  its scales are MinMax's. ORT's Percentile defaults to 99.999, kiln's to 99.99.",
          "* Where ONNX Runtime's optimized run and the \"as written\" run differ, the difference is its",
          "  integer kernels (it also quantizes Add, Softmax and the attention products, which kiln runs in",
          "  FP32 as the model writes them).",
          "* With 500 test images one image is 0.2 points.", "",
          f"Generated {info['date']} with numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime "
          f"{info['ort']}, scikit-learn {info['sklearn']}; training {info['train_s']}.", ""]
    path.write_text("\n".join(L))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-train", action="store_true", help="evaluate the models in --models instead of training")
    ap.add_argument("--models", type=Path, default=REPO / "tests" / "data" / "int8_study")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "int8-accuracy.md")
    ap.add_argument("--kiln", type=Path, default=Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "kiln")
    a = ap.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    train_set, calib, test = T.digits_split()
    a.models.mkdir(parents=True, exist_ok=True)
    paths = {n: a.models / f"digits_{n}.onnx" for n in ("cnn", "transformer")}
    train_s = "not re-run (--no-train)"
    if not a.no_train:
        t0 = time.time()
        models, _ = T.train_both(log=log)
        train_s = f"{time.time() - t0:.0f} s on one core"
        for n, m in models.items():
            onnx.save(m.onnx(), str(paths[n]))
            # the export computes what the numpy model computes
            ref = m.forward(test[0])
            got = ort_session(paths[n]).run(None, {"x": test[0]})[0]
            assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max(), (n, np.abs(got - ref).max())
    import onnxruntime
    import sklearn
    results = {}
    with tempfile.TemporaryDirectory(prefix="kiln_int8_study_") as tmp:
        run = Runner(a.kiln, Path(tmp), calib[0], test[0])
        for n, p in paths.items():
            results[n] = evaluate(n, p, run, test[1], Path(tmp), log)
    info = {"n_test": len(test[0]), "n_calib": len(calib[0]), "date": time.strftime("%Y-%m-%d"),
            "ort": onnxruntime.__version__, "sklearn": sklearn.__version__, "train_s": train_s}
    write_doc(a.doc, results, info)
    for n, r in results.items():
        best = max((x for x in r["rows"] if x["runs_on"] == "kiln"), key=lambda x: x["top1"])
        log(f"{n}: FP32 {r['fp32']:.2f} %, best kiln INT8 {best['calibration']} {best['top1']:.2f} % ({best['delta']:+.2f} pp)")
    log(f"wrote {a.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
