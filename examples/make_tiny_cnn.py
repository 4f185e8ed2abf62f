"""make_tiny_cnn.py — writes examples/tiny_cnn.onnx and examples/tiny_cnn_input.npz, the small
model the README's quick start runs: Conv → BatchNormalization → Relu → MaxPool → Conv → Relu →
GlobalAveragePool → Flatten → Gemm → Softmax on a 1x3x32x32 image, weights from a fixed seed.
Run with the test venv: .venv/bin/python examples/make_tiny_cnn.py (the files are committed)."""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = Path(__file__).resolve().parent
rng = np.random.default_rng(20261123)


def w(name, *shape, scale=0.2):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


inits = [
    w("conv1_w", 8, 3, 3, 3), w("conv1_b", 8, scale=0.05),
    numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn_scale"),
    w("bn_bias", 8, scale=0.1), w("bn_mean", 8, scale=0.1),
    numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn_var"),
    w("conv2_w", 16, 8, 3, 3, scale=0.1), w("conv2_b", 16, scale=0.05),
    w("fc_w", 10, 16), w("fc_b", 10, scale=0.05),
]
nodes = [
    helper.make_node("Conv", ["image", "conv1_w", "conv1_b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
    helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["b1"], name="bn1"),
    helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
    helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
    helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
    helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
    helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
]
graph = helper.make_graph(
    nodes, "tiny_cnn",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
    initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln examples")
onnx.checker.check_model(model)
onnx.save(model, here / "tiny_cnn.onnx")
np.savez(here / "tiny_cnn_input.npz", image=rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32))
print("wrote", here / "tiny_cnn.onnx", "and", here / "tiny_cnn_input.npz")
