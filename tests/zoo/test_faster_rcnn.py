"""The zoo's Faster R-CNN (seed 001, zoo/models/faster_rcnn.onnx): checks beyond tests/zoo/test_zoo.py.

test_zoo.py already compares one fixed-size FP32 engine with ONNX Runtime output by output (same
number of detections, same labels, cosine of boxes and scores). This file adds:

  dynamic image sizes   one engine with a profile of image sizes 64x64 .. 128x160, run at four
                        sizes: at 96x128 the model's transform is an identity, at the others it
                        resizes (bilinear Resize with scales computed from the shapes) and pads to a
                        multiple of 32, so every shape downstream, and the number of detections
                        (0..8), is decided at run time. Each run against ONNX Runtime exactly as the
                        harness compares (shapes, labels equal, cosine >= 0.99999).

  INT8 backbone         the ResNet and FPN convolutions quantized (per-channel int8 weights,
                        calibrated activations), the RPN head and box head kept FP32
                        (--layer-precision). INT8 changes which boxes survive the top-k cuts and
                        NMS, so the outputs are not comparable element by element: each FP32
                        detection is matched to the INT8 detection of the same label with the
                        largest IoU (>= 0.5, each used once). Reported: the fraction of FP32
                        detections matched (recall) and of INT8 detections matched (precision), the
                        mean IoU of the pairs, and the cosine of the paired scores and boxes.

Why exact comparison is safe for FP32 (the harness) and is not relaxed here: the export's random
weights spread the objectness and class logits over several units, so adjacent scores at every
top-k cut, NMS decision and the 0.7 score threshold are ~1e-3 apart while kiln and ORT differ by
~1e-7; 1,000+ random images gave no mismatch in the set, order or labels (measured when the model
was made; see zoo/export/faster_rcnn.py).

    KILN_BUILD_DIR=build python -m pytest -q tests/zoo/test_faster_rcnn.py
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kilnrun  # noqa: E402
from test_zoo import ZOO, cosine, load_spec, ort_run, record  # noqa: E402

SPEC = load_spec(ZOO / "faster_rcnn.json")
SEED = int.from_bytes(os.urandom(4), "little")
print(f"test_faster_rcnn seed {SEED}")
SIZES = [(96, 128), (80, 112), (128, 160), (64, 64)]
# Nodes outside the backbone that --int8 would quantize: the RPN head convs and the box head Gemms.
HEAD_PREFIXES = ("/rpn/", "/roi_heads/")


def image(rng, h: int, w: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, (3, h, w)).astype(np.float32)


def kiln_ok(run) -> None:
    assert run.kind == "ok", f"seed {SEED}: {run.describe()}"


def run_engine(engine: Path, feeds: dict, workdir: Path) -> dict:
    workdir.mkdir(exist_ok=True)
    run, got = kilnrun.run_model(engine, feeds, workdir)
    kiln_ok(run)
    return got


def build(workdir: Path, args: list[str]) -> Path:
    engine = workdir / "model.kiln"
    kiln_ok(kilnrun.run_kiln(["build", SPEC["path"], "-o", engine] + args, timeout=600))
    return engine


def test_dynamic_image_sizes(tmp_path):
    rng = np.random.default_rng(SEED)
    engine = build(tmp_path, ["--min-shapes", "image:3x64x64", "--opt-shapes", "image:3x96x128",
                              "--max-shapes", "image:3x128x160"])
    counts = []
    for h, w in SIZES:
        feeds = {"image": image(rng, h, w)}
        ref = ort_run(SPEC["path"], feeds)
        got = run_engine(engine, feeds, tmp_path / f"{h}x{w}")
        for name, r in ref.items():
            assert got[name].shape == r.shape, f"seed {SEED}, {h}x{w}: {name}: kiln {got[name].shape} vs ORT {r.shape}"
        assert np.array_equal(got["labels"], ref["labels"]), f"seed {SEED}, {h}x{w}: labels differ from ORT"
        for name in ("boxes", "scores"):
            c = cosine(got[name], ref[name])
            assert c >= 0.99999, f"seed {SEED}, {h}x{w}: {name} cosine vs ORT {c:.7f}"
        counts.append(len(ref["scores"]))
    print(f"detections at {SIZES}: {counts}")


# ---- INT8 ------------------------------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), boxes as x1, y1, x2, y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(ref: dict, got: dict, min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy pairs (i in ref, j in got, IoU): ref detections in score order, each takes the
    unused detection of the same label with the largest IoU >= min_iou."""
    if not len(ref["scores"]) or not len(got["scores"]):
        return []
    m = iou(ref["boxes"], got["boxes"])
    m[ref["labels"][:, None] != got["labels"][None, :]] = 0
    pairs, used = [], set()
    for i in np.argsort(-ref["scores"], kind="stable"):
        for j in np.argsort(-m[i], kind="stable"):
            if m[i, j] < min_iou:
                break
            if j not in used:
                used.add(j)
                pairs.append((int(i), int(j), float(m[i, j])))
                break
    return pairs


def test_match_pairs_by_label_and_iou():
    """The matcher on a hand-made case: a shifted box pairs, a relabelled one does not, and a box
    claimed by a better-scored detection is not reused."""
    ref = {"boxes": np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
           "labels": np.array([1, 1, 2]), "scores": np.array([0.9, 0.8, 0.7], np.float32)}
    got = {"boxes": np.array([[1, 0, 11, 10], [20, 20, 30, 30]], np.float32),
           "labels": np.array([1, 1]), "scores": np.array([0.85, 0.75], np.float32)}
    pairs = match(ref, got)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]
    assert abs(pairs[0][2] - 90 / 110) < 1e-6


def test_int8_backbone(tmp_path):
    rng = np.random.default_rng(SEED)
    h, w = SPEC["inputs"]["image"]["shape"][1:]
    fp32 = build(tmp_path, ["--shapes", f"image:3x{h}x{w}"])
    layers = kilnrun.run_kiln(["inspect", fp32, "--json"])
    kiln_ok(layers)
    heads = [n["name"] for n in json.loads(layers.stdout)["layers"]
             if n["op"] in ("Conv", "Gemm") and n["name"].startswith(HEAD_PREFIXES)]
    assert len(heads) == 19, f"expected the 15 RPN head convs and 4 box head Gemms, found {heads}"
    # 8 calibration images stacked on axis 0; a batch is one image's 3 channels (the model has no batch axis)
    kilnrun.save_npz(tmp_path / "calib.npz", {"image": np.concatenate([image(rng, h, w) for _ in range(8)])})
    (tmp_path / "int8").mkdir()
    int8 = build(tmp_path / "int8", ["--shapes", f"image:3x{h}x{w}", "--int8", "--calib", str(tmp_path / "calib.npz"),
                                     "--calib-batch", "3", "--calib-method", "percentile"]
                 + [a for n in heads for a in ("--layer-precision", f"{n}:fp32")])
    quantized = kilnrun.run_kiln(["inspect", int8, "--json"])
    kiln_ok(quantized)
    qconv = [n["name"] for n in json.loads(quantized.stdout)["layers"] if n["op"] == "QLinearConv"]
    assert len(qconv) == 20 and all(n.startswith("/backbone/") for n in qconv), qconv

    n_ref = n_got = 0
    pairs_all, ref_scores, got_scores, ref_boxes, got_boxes = [], [], [], [], []
    for k in range(4):
        feeds = {"image": image(rng, h, w)}
        ref = run_engine(fp32, feeds, tmp_path / f"fp32_{k}")
        got = run_engine(int8, feeds, tmp_path / f"int8_{k}")
        pairs = match(ref, got)
        n_ref, n_got = n_ref + len(ref["scores"]), n_got + len(got["scores"])
        pairs_all += pairs
        for i, j, _ in pairs:
            ref_scores.append(ref["scores"][i]), got_scores.append(got["scores"][j])
            ref_boxes.append(ref["boxes"][i]), got_boxes.append(got["boxes"][j])
    recall = len(pairs_all) / max(n_ref, 1)
    precision = len(pairs_all) / max(n_got, 1)
    mean_iou = float(np.mean([p[2] for p in pairs_all])) if pairs_all else 0.0
    score_cos, box_cos = cosine(got_scores, ref_scores), cosine(got_boxes, ref_boxes)
    summary = (f"INT8 backbone (20 ResNet+FPN convs; heads FP32), 4 images: {len(pairs_all)}/{n_ref} FP32 detections matched "
               f"(label, IoU>=0.5; {len(pairs_all)}/{n_got} of INT8's), mean IoU {mean_iou:.3f}, "
               f"matched scores cosine {score_cos:.5f}, boxes cosine {box_cos:.5f}")
    print(summary)
    record({"model": "faster_rcnn", "int8": "ok", "int8_cosine": min(score_cos, box_cos), "extra_result": summary})
    assert n_ref > 0, f"seed {SEED}: the FP32 engine found no detection on 4 images"
    assert recall >= 0.5 and precision >= 0.5, f"seed {SEED}: {summary}"
    assert score_cos >= 0.99 and box_cos >= 0.99, f"seed {SEED}: {summary}"
