"""test_detection_ops.py — patterns of exported detection models (torchvision Faster R-CNN, zoo
model faster_rcnn) that the ONNX node tests do not cover, each on a small model built here and run
by kiln interpreted and as an engine, against onnxruntime.

    subgraph_reads_node_output   an If branch reads (by name) a value an outer node computes: at
                                 import the branch is inferred before the outer graph, so the value's
                                 type is still unknown (rank -1); it must count as unknown, not as a
                                 known scalar (torchvision's batched_nms: If(numel == 0) else
                                 ReduceMax(boxes) ... NonMaxSuppression)
    nms_many_boxes               NonMaxSuppression over thousands of boxes in clusters (region
                                 proposals: most pairs apart, some overlapping near the
                                 threshold), 2 batches x 3 classes, both box formats, with and
                                 without a score threshold: the selected triples equal ORT's
                                 exactly (the kernel tests overlaps in blocks, IoU only where
                                 boxes overlap)

Inputs are fresh random draws; the seed is printed.

    pytest tests/models/test_detection_ops.py     (needs build/kiln, numpy, onnx, onnxruntime)
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

SEED = int.from_bytes(os.urandom(4), "little")
print(f"test_detection_ops seed {SEED}")


def ort_run(model: onnx.ModelProto, feeds: dict) -> dict:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def check(tmp_path, model: onnx.ModelProto, feeds: dict, engine: bool):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    run, got = kilnrun.run_model(path, feeds, tmp_path, engine=engine)
    assert run.kind == "ok", f"seed {SEED}: {run.describe()}"
    for name, want in ort_run(model, feeds).items():
        assert got[name].shape == want.shape, f"seed {SEED}: {name}: kiln {got[name].shape} vs ORT {want.shape}"
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=f"seed {SEED}: {name}")


def branch_model() -> onnx.ModelProto:
    """boxes (N, 4) -> scaled = boxes * 2 (an outer node) -> If(N == 0): empty keep
    else NonMaxSuppression over scaled boxes offset by ReduceMax(scaled) + 1 (read from the branch)."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["keep_none"], value=numpy_helper.from_array(np.zeros(0, np.int64)))],
        "then", [], [helper.make_tensor_value_info("keep_none", i64, [0])])
    other = helper.make_graph([
        helper.make_node("ReduceMax", ["scaled"], ["m"], keepdims=0),
        helper.make_node("Add", ["scaled", "m"], ["shifted"]),
        helper.make_node("Unsqueeze", ["shifted", "zero"], ["b3"]),
        helper.make_node("Unsqueeze", ["scores", "zero"], ["s2"]),
        helper.make_node("Unsqueeze", ["s2", "zero"], ["s3"]),
        helper.make_node("NonMaxSuppression", ["b3", "s3", "max_out", "iou"], ["sel"]),
        helper.make_node("Gather", ["sel", "two"], ["col"], axis=1),
        helper.make_node("Squeeze", ["col", "one"], ["keep"]),
    ], "else", [], [helper.make_tensor_value_info("keep", i64, None)])
    nodes = [
        helper.make_node("Mul", ["boxes", "two_f"], ["scaled"]),
        helper.make_node("Shape", ["boxes"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero_s"], ["n"], axis=0),
        helper.make_node("Equal", ["n", "zero_s"], ["empty"]),
        helper.make_node("If", ["empty"], ["keep"], then_branch=then, else_branch=other),
    ]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two_f"),
             numpy_helper.from_array(np.array(0, np.int64), "zero_s"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([100], np.int64), "max_out"),
             numpy_helper.from_array(np.array([0.5], np.float32), "iou")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("boxes", f, ["N", 4]),
                                           helper.make_tensor_value_info("scores", f, ["N"])],
                              [helper.make_tensor_value_info("keep", i64, ["K"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("engine", [False, True], ids=["interpreted", "engine"])
@pytest.mark.parametrize("n", [0, 13])
def test_subgraph_reads_node_output(tmp_path, engine, n):
    rng = np.random.default_rng(SEED)
    xy = rng.uniform(0, 40, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(4, 20, (n, 2)).astype(np.float32)], axis=1)
    scores = rng.permutation(n).astype(np.float32) / max(n, 1) + 0.01  # distinct: no ties in the order
    check(tmp_path, branch_model(), {"boxes": boxes, "scores": scores}, engine)


def nms_model(center: int, with_threshold: bool) -> onnx.ModelProto:
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    ins = ["boxes", "scores", "max_out", "iou"] + (["thr"] if with_threshold else [])
    inits = [numpy_helper.from_array(np.array([1500], np.int64), "max_out"),
             numpy_helper.from_array(np.array([0.6], np.float32), "iou"),
             numpy_helper.from_array(np.array([0.3], np.float32), "thr")][:len(ins) - 2]
    graph = helper.make_graph([helper.make_node("NonMaxSuppression", ins, ["sel"], center_point_box=center)], "g",
                              [helper.make_tensor_value_info("boxes", f, [2, "N", 4]),
                               helper.make_tensor_value_info("scores", f, [2, 3, "N"])],
                              [helper.make_tensor_value_info("sel", i64, ["K", 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("center,with_threshold", [(0, False), (0, True), (1, False)])
def test_nms_many_boxes(tmp_path, center, with_threshold):
    rng = np.random.default_rng(SEED)
    n = 2999
    centre = rng.uniform(0, 800, (60, 2))[rng.integers(0, 60, (2, n))] + rng.normal(0, 12, (2, n, 2))
    size = rng.uniform(8, 60, (2, n, 2))
    if center:
        boxes = np.concatenate([centre, size], axis=2)
    else:  # [y1, x1, y2, x2], some corners given in the other order
        lo, hi = centre - size / 2, centre + size / 2
        flip = rng.random((2, n, 1)) < 0.2
        boxes = np.concatenate([np.where(flip, hi, lo), np.where(flip, lo, hi)], axis=2)
    boxes = boxes.astype(np.float32)
    scores = rng.random((2, 3, n)).astype(np.float32)
    check(tmp_path, nms_model(center, with_threshold), {"boxes": boxes, "scores": scores}, engine=True)
