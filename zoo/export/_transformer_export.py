"""Shared by the zoo's transformer export scripts (vit_b_16.py, clip.py, whisper_encoder.py):
export a torch module to ONNX deterministically, check it (onnx.checker, ONNX Runtime against
torch) and print what it is. Run with the torch venv (/tmp/tvenv); the CI tests never import this.

It does not choose configurations or write specs: each model's script does that."""
from __future__ import annotations

import argparse
import hashlib
import io
import random
from pathlib import Path

import numpy as np
import onnx
import torch


def parse_args(doc: str, default_name: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny",
                    help="tiny: the committed CI model; full: the real size (benchmarks on the GPU machine)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"),
                    help="output directory (default zoo/models)")
    ap.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the script's own)")
    ap.add_argument("--name", default=default_name, help=f"file stem (default {default_name})")
    return ap.parse_args()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def reinit_projections(model: torch.nn.Module, gain: float = 1.0) -> None:
    """Redraws every Linear / Conv1d / Conv2d weight (and MultiheadAttention's packed input
    projection) from N(0, gain^2 / fan_in), the variance-keeping scale. Pretraining inits
    (CLIP's and Whisper's std 0.02) make a random network's output nearly independent of its
    input (constant tokens, positions and biases dominate), and then any engine, however
    wrong its input-dependent part, reaches a high cosine against the reference."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, gain / fan_in ** 0.5)
            if isinstance(m, torch.nn.MultiheadAttention) and m.in_proj_weight is not None:
                m.in_proj_weight.normal_(0.0, gain / m.embed_dim ** 0.5)


def perturb_vectors(model: torch.nn.Module, std: float = 0.1) -> None:
    """Adds N(0, std) noise to every 1-D parameter (biases, norm scales and shifts). Their
    initialisations are 0 and 1; the exporter then shares the identical initializers, and kiln's
    handling of a real scale or bias would go untested. Weight matrices are random already."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() <= 1:
                p.add_(torch.randn_like(p) * std)


def export(model: torch.nn.Module, args: tuple, input_names: list[str], output_names: list[str],
           out: Path, opset: int, dynamic_axes: dict | None = None, dynamo: bool = False) -> onnx.ModelProto:
    """Exports model(*args) to out (weights inside the file), checks it and returns it."""
    model.eval()
    buf = io.BytesIO()
    # Not under no_grad: torch's MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention, which no ONNX exporter knows) when autograd is off.
    with torch.enable_grad():
        if dynamo:
            prog = torch.onnx.export(model, args, input_names=input_names, output_names=output_names,
                                     opset_version=opset, dynamo=True, optimize=True, external_data=False,
                                     dynamic_axes=dynamic_axes or None)
            buf.write(prog.model_proto.SerializeToString())
        else:
            torch.onnx.export(model, args, buf, input_names=input_names, output_names=output_names,
                              opset_version=opset, do_constant_folding=True, dynamo=False,
                              dynamic_axes=dynamic_axes or {})
    m = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(m, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = m.SerializeToString()
    if len(data) >= 2 ** 31:
        raise SystemExit(f"{out}: {len(data)} bytes, over protobuf's 2 GiB: not supported by this script")
    out.write_bytes(data)
    return m


def check_against_torch(model: torch.nn.Module, args: tuple, input_names: list[str], path: Path,
                        rtol_cos: float = 0.99999) -> None:
    """Runs the exported file in ONNX Runtime on args and compares every output with torch's."""
    import onnxruntime as ort
    with torch.no_grad():
        ref = model(*args)
    if isinstance(ref, torch.Tensor):
        ref = (ref,)
    ref = [r.numpy() for r in ref if isinstance(r, torch.Tensor)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: a.numpy() for n, a in zip(input_names, args)}
    got = sess.run(None, feeds)
    assert len(got) == len(ref), f"{path}: ORT gives {len(got)} outputs, torch {len(ref)}"
    for o, g, r in zip(sess.get_outputs(), got, ref):
        assert g.shape == r.shape, f"{path}: {o.name} ORT {g.shape} vs torch {r.shape}"
        a, b = g.astype(np.float64).ravel(), r.astype(np.float64).ravel()
        cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))
        err = float(np.abs(a - b).max())
        print(f"  {o.name:24s} {list(g.shape)}  ORT vs torch: cosine {cos:.8f}, max abs err {err:.2e}")
        assert cos >= rtol_cos, f"{path}: {o.name} ORT vs torch cosine {cos}"


def report_sensitivity(model: torch.nn.Module, args_a: tuple, args_b: tuple, output_names: list[str]) -> None:
    """Prints, per output, the cosine between the outputs for two different inputs: near 1 means
    the output hardly depends on the input, and cosine bounds on it prove little."""
    with torch.no_grad():
        ya, yb = model(*args_a), model(*args_b)
    ya, yb = (ya,) if isinstance(ya, torch.Tensor) else ya, (yb,) if isinstance(yb, torch.Tensor) else yb
    for name, a, b in zip(output_names, ya, yb):
        a, b = a.double().ravel(), b.double().ravel()
        print(f"  {name:24s} input sensitivity: cosine between two inputs' outputs {float(a @ b / (a.norm() * b.norm())):.4f}")


def describe(path: Path) -> None:
    m = onnx.load(str(path))
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    print(f"wrote {path}: {path.stat().st_size / 1e6:.2f} MB, opset {opset}, sha256 {sha}")
    print("  ops: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
