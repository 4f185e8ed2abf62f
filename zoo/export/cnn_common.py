"""Shared by the CNN export scripts of the zoo (resnet18.py, resnet50.py, yolov8n.py): random but
realistic BatchNorm statistics, and the export itself with its checks (onnx.checker, ONNX Runtime
against torch, weights inside the file, the same bytes on a second export).

Runs with torch (the export venv), never in CI."""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch


def settle_batchnorm(model: torch.nn.Module, input_shape, seed: int, batches: int = 4, low: float = -1.0,
                     high: float = 1.0) -> None:
    """Gives every BatchNorm random affine parameters and running statistics that match what its
    input really carries. With torch's defaults (mean 0, var 1, gamma 1, beta 0) the folded BN
    would be nearly an identity and activations in deep random nets drift to huge magnitudes; this
    exercises kiln's BN folding with non-trivial scales and shifts and keeps every layer's output
    around unit scale, as in a trained network. The inputs are uniform in [low, high)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)      # gamma in [0.5, 1.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.2)
            bn.reset_running_stats()
            bn.momentum = None                                                   # a plain average
        model.train()
        for _ in range(batches):
            model(low + (high - low) * torch.rand((8, *input_shape[1:]), generator=g))
        model.eval()


def export(model: torch.nn.Module, example: torch.Tensor, out: Path, input_name: str, output_names: list[str],
           dynamic_axes: dict | None = None, opset: int = 17) -> Path:
    """Exports model (eval mode) at example's shape to out, then checks it: onnx.checker, every
    initializer stored inside the file, ONNX Runtime's outputs against torch's on a fresh input, and
    a second export giving the same bytes."""
    model.eval()

    def once() -> bytes:
        buf = io.BytesIO()
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        # TrainingMode.PRESERVE on a model in eval mode: BatchNormalization nodes (inference form) stay
        # in the graph, where the default (EVAL) folds them into the convolutions in torch's exporter;
        # folding them is kiln's job, and the zoo checks it.
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset, do_constant_folding=True,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=[input_name], output_names=output_names, dynamic_axes=dynamic_axes)
        return buf.getvalue()

    data = once()
    if once() != data:
        raise SystemExit(f"{out}: two exports differ; the file would not be deterministic")
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise SystemExit(f"{out}: initializer {t.name} is stored outside the file")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    check_against_ort(model, out, input_name, output_names, tuple(example.shape))
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"  ops: {', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}")
    print(f"wrote {out}: {len(data) / 1e6:.2f} MB, {len(m.graph.node)} nodes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    return out


def check_against_ort(model, path: Path, input_name: str, output_names: list[str], shape) -> None:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise SystemExit("the export check needs onnxruntime in this venv (pip install onnxruntime)") from e
    x = np.random.default_rng(1234).uniform(-1, 1, size=shape).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(output_names, {input_name: x})
    for name, r, o in zip(output_names, ref, got):
        r = r.numpy().astype(np.float64).ravel()
        o = o.astype(np.float64).ravel()
        cos = float(r @ o / max(np.linalg.norm(r) * np.linalg.norm(o), 1e-300))
        err = float(np.abs(r - o).max())
        print(f"  {name}: shape {tuple(got[0].shape)}, ORT vs torch cosine {cos:.8f}, max abs err {err:.2e}, "
              f"|y| max {np.abs(r).max():.3g}")
        if cos < 0.99999:
            raise SystemExit(f"{path}: output {name} of ONNX Runtime differs from torch (cosine {cos})")


def make_resnet(block_name: str, layers: list[int], widths: list[int] | None, num_classes: int = 1000):
    """torchvision's ResNet with its own BasicBlock/Bottleneck, stem, _make_layer and forward; only
    the four stage widths (64, 128, 256, 512 in torchvision) are a parameter, so that a tiny copy
    keeps the architecture: 7x7/2 stem, BN, ReLU, 3x3/2 max pool, four stages of residual blocks
    with 1x1 projection shortcuts, global average pool, fully connected classifier.
    widths None: the real torchvision class as it is."""
    import torchvision.models.resnet as tvr

    block = {"basic": tvr.BasicBlock, "bottleneck": tvr.Bottleneck}[block_name]
    if widths is None:
        return tvr.ResNet(block, layers, num_classes=num_classes)

    class SlimResNet(tvr.ResNet):
        def __init__(self):
            torch.nn.Module.__init__(self)
            self._norm_layer = torch.nn.BatchNorm2d
            self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
            self.conv1 = torch.nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(widths[0])
            self.relu = torch.nn.ReLU(inplace=True)
            self.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, widths[0], layers[0])
            self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
            self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
            self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
            self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
            self.fc = torch.nn.Linear(widths[3] * block.expansion, num_classes)
            for m in self.modules():   # torchvision's initialisation
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    return SlimResNet()


def resnet_main(name: str, block: str, layers: list[int], tiny_widths: list[int], tiny_res: int, seed: int) -> None:
    """The command line of resnet18.py / resnet50.py."""
    import argparse

    ap = argparse.ArgumentParser(description=f"Exports {name} (torchvision's architecture, random weights) to ONNX.")
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny",
                    help=f"tiny: stage widths {tiny_widths}, {tiny_res}x{tiny_res} input (committed for CI); "
                         "full: torchvision's model at 224x224")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"), help="output folder")
    a = ap.parse_args()
    torch.manual_seed(seed)
    res = tiny_res if a.size == "tiny" else 224
    model = make_resnet(block, layers, tiny_widths if a.size == "tiny" else None)
    settle_batchnorm(model, (1, 3, res, res), seed)
    suffix = "" if a.size == "tiny" else "_full"
    export(model, torch.zeros(1, 3, res, res), Path(a.out) / f"{name}{suffix}.onnx", "input", ["logits"],
           dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
