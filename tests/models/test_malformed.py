"""test_malformed.py — `kiln run` on hostile files: it must refuse cleanly, never crash.

For every case kiln must exit with a positive status (a negative returncode is a signal, a
sanitizer report on stderr counts as a crash too), print exactly one non-empty line on stderr of the
form "kiln: <status name>: <what>", with a status from an allowed set, and name the problem (the
file, tensor, node, op or domain at fault) in that line.

Cases: the model file truncated at several points (each verified to be unparseable protobuf),
random bytes, a text file, an empty file; initializers with absurd dims and no data, a negative dim,
and data whose length disagrees with the dims; a graph with a cycle (two nodes, and a self-loop); a
node reading an undefined tensor; an op from a non-default domain (com.microsoft); an unknown op;
external data naming a missing file, or a file outside the model's directory ("../../etc/passwd",
a real ../../…/etc/passwd traversal, an absolute path, and an existing sibling "../secret.bin");
a nonexistent model path; and on the inputs side: a missing graph input in the npz, a wrong dtype,
a wrong shape, a missing npz file, an npz that is not a zip.
A control case first checks that the well-formed base model runs and is right, so that the
refusals above are about the hostile content and not about an op kiln lacks.

Run:   pytest tests/models/test_malformed.py
Needs: the kiln binary ($KILN_BUILD_DIR/kiln or build/kiln).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

TIMEOUT = 30
MODEL_ERRORS = {"invalid model"}
INPUT_ERRORS = {"invalid argument", "runtime error"}
W_SHAPE = (3, 64)


def base_graph_parts():
    """x_input (2,3) @ W (3,64) + bias_input (2,64) -> Relu -> y (2,64)."""
    w = (np.arange(np.prod(W_SHAPE), dtype=np.float32).reshape(W_SHAPE) / 100.0 - 0.5)
    nodes = [
        helper.make_node("MatMul", ["x_input", "W"], ["xw"], name="matmul0"),
        helper.make_node("Add", ["xw", "bias_input"], ["pre"], name="add0"),
        helper.make_node("Relu", ["pre"], ["y"], name="relu0"),
    ]
    inputs = [helper.make_tensor_value_info("x_input", TensorProto.FLOAT, [2, 3]),
              helper.make_tensor_value_info("bias_input", TensorProto.FLOAT, [2, 64])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])]
    return nodes, inputs, outputs, [numpy_helper.from_array(w, "W")], w


def make_model(nodes, inputs, outputs, inits, opsets=(("", 17),)) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                          producer_name="kiln-tests")
    m.ir_version = 8
    return m


def base_model() -> onnx.ModelProto:
    nodes, inputs, outputs, inits, _ = base_graph_parts()
    m = make_model(nodes, inputs, outputs, inits)
    onnx.checker.check_model(m, full_check=True)
    return m


def good_feeds():
    x = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) / 3.0
    b = np.linspace(-1.0, 1.0, 128, dtype=np.float32).reshape(2, 64)
    return {"x_input": x, "bias_input": b}


def save(tmp_path, model: onnx.ModelProto, name="model.onnx"):
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def run_kiln_on(model_path, tmp_path, feeds=None, inputs_path=None, cwd=None):
    if inputs_path is None:
        inputs_path = tmp_path / "inputs.npz"
        kilnrun.save_npz(inputs_path, good_feeds() if feeds is None else feeds)
    out = tmp_path / "outputs.npz"
    return kilnrun.run_kiln(["run", model_path, "--inputs", inputs_path, "--output", out], timeout=TIMEOUT, cwd=cwd)


def assert_refused(run: kilnrun.KilnRun, statuses: set[str], mentions: tuple[str, ...]):
    assert run.kind not in ("crash", "timeout"), f"kiln must refuse cleanly; got {run.describe()}"
    assert run.returncode is not None and run.returncode > 0, \
        f"kiln must exit non-zero; got rc={run.returncode}, stderr={run.stderr!r}"
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stderr must be exactly one line; got {len(lines)}: {run.stderr!r}"
    line = lines[0]
    assert line.startswith("kiln: "), f"message must start with 'kiln: ': {line!r}"
    status = kilnrun.parse_status(line)
    assert status in statuses, f"status {status!r} not in {sorted(statuses)}: {line!r}"
    low = line.lower()
    assert any(m.lower() in low for m in mentions), f"message must name the problem (one of {mentions}): {line!r}"


# ---- control ------------------------------------------------------------------------------------

def test_control_base_model_runs(kiln, tmp_path):
    path = save(tmp_path, base_model())
    run, got = kilnrun.run_model(path, good_feeds(), tmp_path, timeout=TIMEOUT)
    assert run.kind == "ok", f"the well-formed base model must run: {run.describe()}"
    f = good_feeds()
    _, _, _, _, w = base_graph_parts()
    exp = np.maximum(f["x_input"] @ w + f["bias_input"], 0).astype(np.float32)
    c = kilnrun.compare(got["y"], exp, rtol=1e-5, atol=1e-6)
    assert c.ok, c.detail


# ---- broken files ---------------------------------------------------------------------------------

def _unparseable(data: bytes) -> bool:
    try:
        onnx.ModelProto().ParseFromString(data)
    except Exception:
        return True
    return False


def truncation_point(data: bytes, frac: float) -> int:
    """The first cut at or below len*frac (at least 1) that leaves unparseable protobuf."""
    k = max(1, min(len(data) - 1, int(len(data) * frac)))
    while k > 1 and not _unparseable(data[:k]):
        k -= 1
    assert _unparseable(data[:k]), f"no unparseable truncation at or below {frac}"
    return k


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999], ids=lambda f: f"cut{f:g}")
def test_truncated_model(frac, kiln, tmp_path):
    data = base_model().SerializeToString()
    k = truncation_point(data, frac)
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[:k])
    assert_refused(run_kiln_on(path, tmp_path), MODEL_ERRORS, ("truncated.onnx",))


@pytest.mark.parametrize("kind", ["random_bytes", "text", "empty"])
def test_not_a_model(kind, kiln, tmp_path):
    content = {
        "random_bytes": np.random.default_rng(20240917).bytes(4096),  # fixed: same bytes every run
        "text": b"this is a text file, not an ONNX model\n" * 16,
        "empty": b"",
    }[kind]
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(content)
    assert_refused(run_kiln_on(path, tmp_path), MODEL_ERRORS, (path.name,))


def _model_with_initializer(tensor: TensorProto) -> onnx.ModelProto:
    """y = Relu(x_input) + tensor, where tensor is the (hostile) initializer."""
    nodes = [helper.make_node("Relu", ["x_input"], ["r"], name="relu0"),
             helper.make_node("Add", ["r", tensor.name], ["y"], name="add0")]
    return make_model(nodes, [helper.make_tensor_value_info("x_input", TensorProto.FLOAT, [2, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [tensor])


def _tensor(name, dims, raw=None, floats=None):
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    if floats is not None:
        t.float_data.extend(floats)
    return t


HOSTILE_INITIALIZERS = {
    "dims_product_overflows": (_tensor("huge_w", [1 << 40, 1 << 40]), {"out of memory"}),
    "dims_huge_no_data": (_tensor("huge_w", [1 << 40]), set()),
    "dims_huge_short_raw": (_tensor("huge_w", [1 << 40, 3], raw=b"\0" * 12), {"out of memory"}),
    "dim_negative": (_tensor("huge_w", [-2, 3], raw=b"\0" * 24), set()),
    "raw_data_short": (_tensor("bad_w", [2, 3], raw=b"\0" * 20), set()),
    "raw_data_long": (_tensor("bad_w", [2, 3], raw=b"\0" * 28), set()),
    "float_data_count": (_tensor("bad_w", [2, 3], floats=[1.0] * 5), set()),
}


@pytest.mark.parametrize("case", list(HOSTILE_INITIALIZERS))
def test_hostile_initializer(case, kiln, tmp_path):
    tensor, extra_statuses = HOSTILE_INITIALIZERS[case]
    path = save(tmp_path, _model_with_initializer(tensor))
    assert_refused(run_kiln_on(path, tmp_path, feeds={"x_input": good_feeds()["x_input"]}),
                   MODEL_ERRORS | extra_statuses, (tensor.name,))


# ---- broken graphs --------------------------------------------------------------------------------

def _graph_model(nodes):
    return make_model(nodes, [helper.make_tensor_value_info("x_input", TensorProto.FLOAT, [2, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [])


def test_graph_with_cycle(kiln, tmp_path):
    nodes = [helper.make_node("Add", ["x_input", "cyc_b"], ["cyc_a"], name="cyc_node_a"),
             helper.make_node("Relu", ["cyc_a"], ["cyc_b"], name="cyc_node_b"),
             helper.make_node("Identity", ["cyc_b"], ["y"], name="out")]
    path = save(tmp_path, _graph_model(nodes))
    assert_refused(run_kiln_on(path, tmp_path, feeds={"x_input": good_feeds()["x_input"]}), MODEL_ERRORS,
                   ("cycle", "cyclic", "topolog", "cyc_a", "cyc_b"))


def test_graph_with_self_loop(kiln, tmp_path):
    nodes = [helper.make_node("Add", ["x_input", "loop_t"], ["loop_t"], name="loop_node"),
             helper.make_node("Identity", ["loop_t"], ["y"], name="out")]
    path = save(tmp_path, _graph_model(nodes))
    assert_refused(run_kiln_on(path, tmp_path, feeds={"x_input": good_feeds()["x_input"]}), MODEL_ERRORS,
                   ("cycle", "cyclic", "topolog", "loop_t"))


def test_node_reads_undefined_tensor(kiln, tmp_path):
    nodes = [helper.make_node("Add", ["x_input", "ghost_tensor"], ["y"], name="add_ghost")]
    path = save(tmp_path, _graph_model(nodes))
    assert_refused(run_kiln_on(path, tmp_path, feeds={"x_input": good_feeds()["x_input"]}), MODEL_ERRORS,
                   ("ghost_tensor",))


def test_op_from_non_default_domain(kiln, tmp_path):
    nodes = [helper.make_node("FusedMatMul", ["x_input", "x_input"], ["y"], name="ms_node",
                              domain="com.microsoft", transB=1)]
    m = make_model(nodes, [helper.make_tensor_value_info("x_input", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [],
                   opsets=(("", 17), ("com.microsoft", 1)))
    path = save(tmp_path, m)
    assert_refused(run_kiln_on(path, tmp_path, feeds={"x_input": good_feeds()["x_input"]}), {"unsupported"},
                   ("com.microsoft",))


def test_unknown_op_type(kiln, tmp_path):
    nodes = [helper.make_node("FrobnicateTensor", ["x_input"], ["y"], name="frob")]
    path = save(tmp_path, _graph_model(nodes))
    assert_refused(run_kiln_on(path, tmp_path, feeds={"x_input": good_feeds()["x_input"]}),
                   {"unsupported", "invalid model"}, ("FrobnicateTensor",))


# ---- external data ------------------------------------------------------------------------------

def _external_model(location: str) -> onnx.ModelProto:
    """The base model with W stored externally at `location` (offset 0, 3*64*4 bytes)."""
    nodes, inputs, outputs, inits, _ = base_graph_parts()
    w = inits[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(int(np.prod(W_SHAPE)) * 4))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return make_model(nodes, inputs, outputs, [w])


def test_external_data_missing_file(kiln, tmp_path):
    path = save(tmp_path, _external_model("missing_weights.bin"))
    assert_refused(run_kiln_on(path, tmp_path), {"i/o error", "invalid model"}, ("missing_weights.bin",))


def _escape_cases(model_dir):
    return {
        "dotdot_literal": "../../etc/passwd",
        "dotdot_to_real_etc_passwd": os.path.relpath("/etc/passwd", model_dir),
        "absolute": "/etc/passwd",
        "sibling_secret": "../secret.bin",
    }


@pytest.mark.parametrize("case", ["dotdot_literal", "dotdot_to_real_etc_passwd", "absolute", "sibling_secret"])
def test_external_data_outside_model_dir_is_refused(case, kiln, tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    # A readable file of exactly the right size just outside the model directory: a kiln that does
    # not confine external data to the model's directory would load it and succeed.
    (tmp_path / "secret.bin").write_bytes(np.ones(W_SHAPE, np.float32).tobytes())
    location = _escape_cases(model_dir)[case]
    path = save(model_dir, _external_model(location))
    mention = os.path.basename(location)
    assert_refused(run_kiln_on(path, tmp_path), {"invalid model", "i/o error"}, (mention, location))


def test_nonexistent_model_path(kiln, tmp_path):
    path = tmp_path / "no_such_model.onnx"
    assert_refused(run_kiln_on(path, tmp_path), {"i/o error"}, ("no_such_model.onnx",))


# ---- inputs ---------------------------------------------------------------------------------------

def test_missing_graph_input_in_npz(kiln, tmp_path):
    path = save(tmp_path, base_model())
    feeds = {"x_input": good_feeds()["x_input"]}  # bias_input left out
    assert_refused(run_kiln_on(path, tmp_path, feeds=feeds), INPUT_ERRORS, ("bias_input",))


def test_wrong_input_dtype(kiln, tmp_path):
    path = save(tmp_path, base_model())
    feeds = good_feeds()
    feeds["x_input"] = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert_refused(run_kiln_on(path, tmp_path, feeds=feeds), INPUT_ERRORS, ("x_input",))


@pytest.mark.parametrize("shape", [(2, 5), (3, 2), (2, 3, 1), (6,)], ids=lambda s: "x".join(map(str, s)))
def test_wrong_input_shape(shape, kiln, tmp_path):
    path = save(tmp_path, base_model())
    feeds = good_feeds()
    feeds["x_input"] = np.ones(shape, np.float32)
    assert_refused(run_kiln_on(path, tmp_path, feeds=feeds), INPUT_ERRORS, ("x_input",))


def test_inputs_file_missing(kiln, tmp_path):
    path = save(tmp_path, base_model())
    assert_refused(run_kiln_on(path, tmp_path, inputs_path=tmp_path / "no_such_inputs.npz"), {"i/o error"},
                   ("no_such_inputs.npz",))


def test_inputs_file_not_a_zip(kiln, tmp_path):
    path = save(tmp_path, base_model())
    bad = tmp_path / "garbage_inputs.npz"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip archive" + bytes(range(256)))
    assert_refused(run_kiln_on(path, tmp_path, inputs_path=bad), {"invalid argument", "i/o error"},
                   ("garbage_inputs.npz",))
