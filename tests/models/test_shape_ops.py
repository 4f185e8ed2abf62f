"""test_shape_ops.py — the shape group's ops (src/ops/ops_shape.def) beyond the ONNX node tests.

The node tests (tests/conformance/run_node_tests.py) cover each op's main path once. This suite adds
what they miss: every dtype through the data-movement ops, zero-sized tensors, negative steps and
INT64 bounds in Slice, int32 indices, reductions of the scatters, the older opsets that kept axes,
pads and splits as attributes, negative pads (crops) of Pad, unsorted Unique with an axis, the
bfloat16 cases (fed through Cast, since npz cannot carry bf16), and the errors: out-of-range indices
must be a "runtime error" naming the index, inconsistent shapes an "invalid argument".

Every case runs four ways: inputs as graph inputs or initializers (so shape inference sees the
values at import, or not), with declared dims fixed or symbolic. The oracle is onnx's reference
evaluator, or onnxruntime where the evaluator is wrong (noted per case).

    pytest tests/models/test_shape_ops.py          (needs build/kiln, numpy, onnx, onnxruntime)
"""
from __future__ import annotations

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kilnrun

NP2ONNX = {np.dtype(k): v for k, v in [(np.float32, 1), (np.uint8, 2), (np.int8, 3), (np.uint16, 4), (np.int16, 5),
                                       (np.int32, 6), (np.int64, 7), (np.bool_, 9), (np.float16, 10),
                                       (np.float64, 11), (np.uint32, 12), (np.uint64, 13)]}
rng = np.random.default_rng(0)


def i64(*v):
    return np.array(v, dtype=np.int64)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def make_model(op, inputs, n_out, opset, symbolic, as_const, attrs):
    """inputs: (name, array or None for an omitted input); as_const: names given as initializers."""
    node = helper.make_node(op, [n if a is not None else "" for n, a in inputs], [f"y{i}" for i in range(n_out)], **attrs)
    graph_inputs, inits, feeds = [], [], {}
    for name, a in inputs:
        if a is None:
            continue
        if name in as_const:
            inits.append(numpy_helper.from_array(a, name))
            continue
        dims = [f"{name}_{i}" for i in range(a.ndim)] if symbolic else list(a.shape)
        graph_inputs.append(helper.make_tensor_value_info(name, NP2ONNX[a.dtype], dims))
        feeds[name] = a
    outputs = [helper.make_tensor_value_info(f"y{i}", 0, None) for i in range(n_out)]
    graph = helper.make_graph([node], "g", graph_inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, feeds


def run_kiln(kiln, tmp_path, model, feeds):
    mp, ip, op = tmp_path / "m.onnx", tmp_path / "in.npz", tmp_path / "out.npz"
    onnx.save(model, mp)
    kilnrun.save_npz(ip, feeds)
    r = subprocess.run([str(kiln), "run", str(mp), "--inputs", str(ip), "--output", str(op)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None, r.stderr.strip()
    with np.load(op) as z:
        return {k: z[k] for k in z.files}, None


def oracle(model, feeds, use_ort):
    if use_ort:
        import onnxruntime as ort
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        return ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


# (id, op, inputs, attrs, options): options may hold n_out, opset, ort (use onnxruntime as oracle).
CASES = [
    ("reshape_minus1", "Reshape", [("x", f32(2, 3, 4)), ("s", i64(4, -1))], {}, {}),
    ("reshape_copy0", "Reshape", [("x", f32(2, 3, 4)), ("s", i64(0, 0, -1))], {}, {}),
    ("reshape_allowzero", "Reshape", [("x", np.zeros((2, 0, 3), np.float32)), ("s", i64(0, 3, 0))], {"allowzero": 1}, {}),
    ("flatten_0", "Flatten", [("x", f32(2, 3, 4))], {"axis": 0}, {}),
    ("flatten_end", "Flatten", [("x", f32(2, 3, 4))], {"axis": 3}, {}),
    ("squeeze_all", "Squeeze", [("x", f32(2, 1, 3, 1))], {}, {}),
    ("squeeze_v11", "Squeeze", [("x", f32(2, 1, 12))], {"axes": [1]}, {"opset": 11}),
    ("unsqueeze", "Unsqueeze", [("x", f32(2, 3)), ("a", i64(-1, 0))], {}, {}),
    ("unsqueeze_v11", "Unsqueeze", [("x", f32(2, 3))], {"axes": [1, 3]}, {"opset": 11}),
    *[(f"transpose_{t.__name__}", "Transpose", [("x", (f32(2, 3, 4) * 10).astype(t))], {"perm": [2, 0, 1]}, {})
      for t in (np.float16, np.float64, np.int8, np.uint16, np.int32, np.uint64, np.bool_)],
    ("transpose_empty", "Transpose", [("x", np.zeros((2, 0, 3), np.float32))], {"perm": [1, 2, 0]}, {}),
    ("depthtospace_crd", "DepthToSpace", [("x", f32(2, 8, 3, 2))], {"blocksize": 2, "mode": "CRD"}, {}),
    ("spacetodepth", "SpaceToDepth", [("x", f32(2, 3, 4, 6))], {"blocksize": 2}, {}),
    ("concat_empty", "Concat", [("a", np.zeros((2, 0, 3), np.float32)), ("b", f32(2, 2, 3))], {"axis": 1}, {}),
    ("split_uneven", "Split", [("x", np.arange(7, dtype=np.float32))], {"num_outputs": 3}, {"n_out": 3, "opset": 18}),
    ("split_attr_v11", "Split", [("x", np.arange(7, dtype=np.int32))], {"split": [3, 4]}, {"n_out": 2, "opset": 11}),
    ("split_zero", "Split", [("x", np.arange(12, dtype=np.int32).reshape(3, 4)), ("s", i64(1, 0, 3))], {"axis": 1},
     {"n_out": 3, "opset": 13}),
    ("slice_neg_steps", "Slice", [("x", f32(2, 3, 4)), ("s", i64(-1, 10)), ("e", i64(-10**18, -1)), ("a", i64(2, 1)),
                                  ("t", i64(-2, 1))], {}, {}),
    ("slice_int64_max", "Slice", [("x", f32(2, 3, 4)), ("s", i64(1)), ("e", i64(2**63 - 1)), ("a", i64(-1))], {}, {}),
    ("slice_int64_min", "Slice", [("x", f32(2, 3, 4)), ("s", i64(2**63 - 1)), ("e", i64(-2**63)), ("a", i64(0)),
                                  ("t", i64(-1))], {}, {}),
    ("slice_huge_step", "Slice", [("x", f32(2, 3, 4)), ("s", i64(0)), ("e", i64(4)), ("a", i64(2)), ("t", i64(2**63 - 1))],
     {}, {}),
    ("slice_int32", "Slice", [("x", f32(2, 3, 4)), ("s", np.array([1], np.int32)), ("e", np.array([3], np.int32))], {}, {}),
    ("slice_empty", "Slice", [("x", f32(2, 3, 4)), ("s", i64(3)), ("e", i64(1)), ("a", i64(2))], {}, {}),
    ("slice_v9_attrs", "Slice", [("x", f32(2, 3, 4))], {"starts": [0, 1], "ends": [1, 100], "axes": [0, 2]}, {"opset": 9}),
    ("gather_2d_idx", "Gather", [("x", f32(2, 3, 4)), ("i", np.array([[0, -1], [1, 2]], np.int64))], {"axis": 2}, {}),
    ("gather_int32", "Gather", [("x", f32(2, 3, 4)), ("i", np.array([[0, -1], [1, 2]], np.int32))], {"axis": -2}, {}),
    ("gather_scalar_idx", "Gather", [("x", f32(2, 3, 4)), ("i", np.array(1, np.int64))], {"axis": 1}, {}),
    ("gather_elements", "GatherElements", [("x", f32(2, 3, 4)), ("i", rng.integers(-3, 3, (2, 2, 4)))], {"axis": 1}, {}),
    ("gathernd", "GatherND", [("x", f32(2, 3, 4)), ("i", np.array([[[0, 1], [1, -1]]], np.int64))], {}, {}),
    ("gathernd_batch", "GatherND", [("x", f32(2, 3, 4)), ("i", np.array([[[1], [2]], [[0], [0]]], np.int64))],
     {"batch_dims": 1}, {}),
    *[(f"scatter_elements_{r}", "ScatterElements",
       [("d", np.ones((3, 4), np.float32)), ("i", np.array([[0, 1, 2], [2, 0, -1]], np.int64)), ("u", f32(2, 3))],
       {"axis": 1, "reduction": r}, {"opset": 18}) for r in ("none", "add", "mul", "max", "min")],
    *[(f"scatternd_{r}", "ScatterND", [("d", np.ones((3, 4), np.float32)), ("i", np.array([[1], [0], [1]], np.int64)),
                                       ("u", f32(3, 4))], {"reduction": r}, {"opset": 18})
      for r in ("none", "add", "mul", "max", "min")],
    ("scatter_elements_int", "ScatterElements", [("d", np.arange(12, dtype=np.int32).reshape(3, 4)),
                                                 ("i", np.array([[0, 1, 2], [2, 0, -1]], np.int64)),
                                                 ("u", np.array([[5, 6, 7], [8, 9, 10]], np.int32))],
     {"axis": 1, "reduction": "add"}, {"opset": 18}),
    ("expand", "Expand", [("x", np.arange(3, dtype=np.float32).reshape(3, 1)), ("s", i64(2, 1, 4))], {}, {}),
    ("expand_smaller_shape", "Expand", [("x", np.arange(3, dtype=np.float32).reshape(3, 1)), ("s", i64(1, 1))], {}, {}),
    ("expand_to_empty", "Expand", [("x", np.arange(3, dtype=np.float32).reshape(3, 1)), ("s", i64(0, 3, 1))], {}, {}),
    ("tile", "Tile", [("x", f32(2, 3, 4)), ("r", i64(1, 2, 3))], {}, {}),
    ("tile_zero", "Tile", [("x", f32(2, 3, 4)), ("r", i64(1, 0, 3))], {}, {}),
    ("shape_of_empty", "Shape", [("x", np.zeros((2, 0, 3), np.float32))], {"start": -2}, {}),
    ("size_of_empty", "Size", [("x", np.zeros((2, 0, 3), np.float32))], {}, {}),
    ("range_int64", "Range", [("a", np.array(10, np.int64)), ("b", np.array(-7, np.int64)), ("c", np.array(-3, np.int64))],
     {}, {}),
    ("range_float", "Range", [("a", np.array(0.5, np.float32)), ("b", np.array(3.1, np.float32)),
                              ("c", np.array(0.3, np.float32))], {}, {}),
    ("range_empty", "Range", [("a", np.array(5, np.int16)), ("b", np.array(1, np.int16)), ("c", np.array(1, np.int16))],
     {}, {}),
    ("constant_of_shape_int32", "ConstantOfShape", [("s", i64(2, 3))],
     {"value": helper.make_tensor("v", TensorProto.INT32, [1], [7])}, {}),
    ("constant_of_shape_scalar", "ConstantOfShape", [("s", np.zeros(0, np.int64))], {}, {}),
    *[(f"pad_{m}", "Pad", [("x", f32(3, 4)), ("p", i64(2, 3, 1, 5))], {"mode": m}, {})
      for m in ("constant", "reflect", "edge", "wrap")],
    # negative pads crop first; onnx's evaluator refuses them, onnxruntime does not
    *[(f"pad_{m}_crop", "Pad", [("x", f32(3, 4)), ("p", i64(-1, 2, 1, -2))], {"mode": m}, {"ort": True})
      for m in ("constant", "edge")],
    ("pad_v2_attrs", "Pad", [("x", f32(3, 4))], {"pads": [1, 0, 0, 2], "value": 1.5}, {"opset": 10}),
    ("pad_value", "Pad", [("x", f32(3, 4)), ("p", i64(1, 1, 1, 1)), ("v", np.array(3.0, np.float32))], {}, {}),
    ("pad_axes", "Pad", [("x", f32(3, 4)), ("p", i64(1, 2)), ("v", None), ("a", np.array([-1], np.int32))],
     {"mode": "reflect"}, {}),
    ("trilu_lower", "Trilu", [("x", f32(2, 3, 5)), ("k", np.array(-1, np.int64))], {"upper": 0}, {}),
    ("eyelike_k", "EyeLike", [("x", np.zeros((3, 5), np.int32))], {"k": 2, "dtype": TensorProto.DOUBLE}, {}),
    ("onehot_float_idx", "OneHot", [("i", np.array([[1, -1], [5, 0]], np.float32)), ("d", np.array(3, np.int64)),
                                    ("v", np.array([0, 2], np.int64))], {"axis": 1}, {}),
    ("nonzero_nan", "NonZero", [("x", np.array([[0, 1.5, np.nan], [0, 0, -0.0]], np.float32))], {}, {}),
    ("nonzero_empty", "NonZero", [("x", np.zeros((0, 3), np.int32))], {}, {}),
    ("compress_axis", "Compress", [("x", f32(2, 3, 4)), ("c", np.array([True, False, True]))], {"axis": 1}, {}),
    ("compress_flat", "Compress", [("x", f32(2, 3, 4)), ("c", np.array([True, False, True, True]))], {}, {}),
    ("unique_axis0", "Unique", [("x", np.array([[1, 2, 1], [3, 1, 2], [1, 2, 1]], np.int64))], {"axis": 0},
     {"n_out": 4}),
    # onnx's evaluator takes unsorted slices along axis 0 whatever the axis: onnxruntime is right
    ("unique_unsorted_axis1", "Unique", [("x", np.array([[1, 2, 1], [3, 1, 2], [1, 2, 1]], np.int64))],
     {"axis": 1, "sorted": 0}, {"n_out": 4, "ort": True}),
    ("unique_unsorted", "Unique", [("x", np.array([[1, 2, 1], [3, 1, 2]], np.int64))], {"sorted": 0},
     {"n_out": 4, "ort": True}),
    ("unique_float", "Unique", [("x", np.array([2.0, np.nan, 1.0, 2.0, -0.0, 0.0], np.float32))], {}, {"n_out": 4}),
    ("reverse_sequence", "ReverseSequence", [("x", f32(4, 3, 2)), ("l", i64(4, 1, 0))], {"batch_axis": 1, "time_axis": 0},
     {}),
    ("col2im_pads", "Col2Im", [("x", f32(2, 12, 16)), ("i", i64(4, 5)), ("b", i64(2, 3))], {"pads": [0, 1, 1, 0]},
     {"opset": 18, "ort": True}),
    ("col2im_strides_dilations", "Col2Im", [("x", f32(1, 12, 4)), ("i", i64(5, 7)), ("b", i64(2, 2))],
     {"strides": [2, 3], "dilations": [2, 1]}, {"opset": 18, "ort": True}),
    ("center_crop_pad_axes", "CenterCropPad", [("x", f32(5, 4, 3)), ("s", i64(3, 7))], {"axes": [0, -1]}, {"opset": 18}),
    ("tensorscatter_circular", "TensorScatter", [("p", f32(2, 5, 3)), ("u", f32(2, 2, 3)), ("w", i64(3, 4))],
     {"mode": "circular", "axis": 1}, {"opset": 24}),
]

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("symbolic,as_const", VARIANTS, ids=["fixed", "symbolic", "const", "symbolic-const"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op(kiln, tmp_path, case, symbolic, as_const):
    _, op, inputs, attrs, opt = case
    const = [n for n, a in inputs[1:] if a is not None] if as_const else []
    model, feeds = make_model(op, inputs, opt.get("n_out", 1), opt.get("opset", 21), symbolic, const, attrs)
    got, err = run_kiln(kiln, tmp_path, model, feeds)
    assert err is None, err
    for i, exp in enumerate(oracle(model, feeds, opt.get("ort", False))):
        exp, g = np.asarray(exp), got[f"y{i}"]
        assert g.dtype == exp.dtype and g.shape == exp.shape, f"output {i}: {g.dtype}{g.shape} vs {exp.dtype}{exp.shape}"
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, exp, rtol=1e-5, atol=1e-6, equal_nan=True)  # Col2Im sums in double
        else:
            np.testing.assert_array_equal(g, exp)


# (id, op, inputs, attrs, opset, the start of kiln's message)
ERRORS = [
    ("gather_index", "Gather", [("x", f32(2, 3)), ("i", i64(0, 7))], {"axis": 1}, 21, "runtime error"),
    ("gather_elements_index", "GatherElements", [("x", f32(2, 3)), ("i", np.full((2, 3), 3, np.int64))], {"axis": 1}, 21,
     "runtime error"),
    ("gathernd_index", "GatherND", [("x", f32(2, 3)), ("i", i64(-3).reshape(1, 1))], {}, 21, "runtime error"),
    ("scatternd_index", "ScatterND", [("d", f32(2, 3)), ("i", i64(5).reshape(1, 1)), ("u", f32(1, 3))], {}, 21,
     "runtime error"),
    ("scatter_elements_index", "ScatterElements", [("d", f32(2, 3)), ("i", np.full((1, 2), 9, np.int64)), ("u", f32(1, 2))],
     {}, 21, "runtime error"),
    ("tensorscatter_linear_overflow", "TensorScatter", [("p", f32(2, 5, 3)), ("u", f32(2, 2, 3)), ("w", i64(3, 4))],
     {"axis": 1}, 24, "runtime error"),
    ("reverse_sequence_len", "ReverseSequence", [("x", f32(4, 3, 2)), ("l", i64(5, 1, 0))], {}, 21, "runtime error"),
    ("reshape_count", "Reshape", [("x", f32(2, 3, 4)), ("s", i64(5, -1))], {}, 21, "invalid argument"),
    ("reshape_overflow", "Reshape", [("x", f32(2, 3, 4)), ("s", i64(2**62, 4, -1))], {}, 21, "invalid argument"),
    ("constant_of_shape_huge", "ConstantOfShape", [("s", i64(2**40, 2**40))], {}, 21, "invalid argument"),
    ("range_huge", "Range", [("a", np.array(0, np.int64)), ("b", np.array(2**62, np.int64)), ("c", np.array(1, np.int64))],
     {}, 21, "invalid argument"),
    ("slice_zero_step", "Slice", [("x", f32(2, 3)), ("s", i64(0)), ("e", i64(1)), ("a", i64(0)), ("t", i64(0))], {}, 21,
     "invalid argument"),
    ("concat_shapes", "Concat", [("a", f32(2, 3)), ("b", f32(3, 3))], {"axis": 1}, 21, "invalid argument"),
    ("squeeze_not_one", "Squeeze", [("x", f32(2, 3)), ("a", i64(1))], {}, 21, "invalid argument"),
    ("pad_crop_too_much", "Pad", [("x", f32(2, 3)), ("p", i64(0, -5, 0, 0))], {}, 21, "invalid argument"),
]


@pytest.mark.parametrize("as_const", [False, True], ids=["input", "const"])
@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_error(kiln, tmp_path, case, as_const):
    _, op, inputs, attrs, opset, status = case
    const = [n for n, a in inputs[1:] if a is not None] if as_const else []
    model, feeds = make_model(op, inputs, 1, opset, False, const, attrs)
    got, err = run_kiln(kiln, tmp_path, model, feeds)
    assert err is not None and f"kiln: {status}:" in err and f"({op})" in err, err


BF16_CASES = ["test_compress_bfloat16", "test_onehot_with_bfloat16_values", "test_range_bfloat16_type_positive_delta",
              "test_range_bfloat16_type_positive_delta_expanded", "test_reversesequence_bfloat16",
              "test_unique_bfloat16_sorted_without_axis"]


@pytest.mark.parametrize("name", BF16_CASES)
def test_bf16_node_case(kiln, tmp_path, name):
    """The node tests with bf16 inputs/outputs, with f32 graph inputs/outputs cast to and from bf16
    (exact both ways for these values)."""
    import onnx.backend.test.case.node as node_cases
    case = next(c for c in node_cases.collect_testcases() if c.name == name)
    g = case.model.graph
    bf16 = TensorProto.BFLOAT16
    pre, post, ins, outs = [], [], [], []
    for vi in g.input:
        if vi.type.tensor_type.elem_type == bf16:
            ins.append(helper.make_tensor_value_info(vi.name + "_f32", TensorProto.FLOAT, None))
            pre.append(helper.make_node("Cast", [vi.name + "_f32"], [vi.name], to=bf16))
        else:
            ins.append(vi)
    for vi in g.output:
        if vi.type.tensor_type.elem_type == bf16:
            outs.append(helper.make_tensor_value_info(vi.name + "_f32", TensorProto.FLOAT, None))
            post.append(helper.make_node("Cast", [vi.name], [vi.name + "_f32"], to=TensorProto.FLOAT))
        else:
            outs.append(vi)
    graph = helper.make_graph(pre + list(g.node) + post, "g", ins, outs, initializer=list(g.initializer))
    model = helper.make_model(graph, opset_imports=case.model.opset_import, ir_version=case.model.ir_version)
    for inputs, expected in case.data_sets:
        feeds = {}
        for vi, a in zip(g.input, inputs):
            is_bf16 = vi.type.tensor_type.elem_type == bf16
            feeds[vi.name + "_f32" if is_bf16 else vi.name] = np.asarray(a).astype(np.float32) if is_bf16 else np.asarray(a)
        got, err = run_kiln(kiln, tmp_path, model, feeds)
        assert err is None, err
        for vi, exp in zip(g.output, expected):
            is_bf16 = vi.type.tensor_type.elem_type == bf16
            exp = np.asarray(exp).astype(np.float32) if is_bf16 else np.asarray(exp)
            np.testing.assert_array_equal(got[vi.name + "_f32" if is_bf16 else vi.name], exp)
