"""train.py — the two small digit classifiers of the INT8 accuracy study, trained with numpy alone
(manual backprop: convolution as im2col + matmul, Adam), and their export to ONNX with onnx.helper.

    cnn          x [N,1,8,8] -> Conv 3x3 (16) -> Relu -> Conv 3x3 stride 2 (32) -> Relu -> Flatten -> Gemm (10)
    transformer  x [N,8,8]: 8 tokens (image rows) of 8 pixels -> MatMul+bias (32) + position embedding ->
                 pre-LayerNorm block: single-head self-attention, residual; LayerNorm, MLP 32-64-32 (Relu),
                 residual -> mean over tokens -> Gemm (10)

Everything is seeded; study.py imports this module. Run alone: python train.py (prints accuracies).
"""
from __future__ import annotations

import os
import time

# One BLAS thread: tiny matrices gain nothing from more, a shared machine loses a lot (spinning
# threads), and one thread sums in one order, so the same seed gives the same weights.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


# ---- data ----------------------------------------------------------------------------------------

def digits_split(seed: int = 0, n_test: int = 500, n_calib: int = 256):
    """scikit-learn's 8x8 digits, pixels scaled to [-1, 1]: (train, calib, test) as (x [N,1,8,8] f32, y).
    The calibration samples are the first n_calib of the (shuffled) training set, as in practice."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0 - 0.5) * 2.0
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm][:, None], y[perm]
    train = (x[n_test:], y[n_test:])
    test = (x[:n_test], y[:n_test])
    calib = (train[0][:n_calib], train[1][:n_calib])
    return train, calib, test


# ---- layers with manual backward -----------------------------------------------------------------

class Param:
    def __init__(self, value):
        self.v = np.asarray(value, np.float32)
        self.g = np.zeros_like(self.v)
        self.m = np.zeros_like(self.v)
        self.s = np.zeros_like(self.v)


class Linear:
    """y = x @ W + b over the last axis (W: [in, out])."""

    def __init__(self, rng, n_in, n_out):
        self.W = Param(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in))
        self.b = Param(np.zeros(n_out))

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return x @ self.W.v + self.b.v

    def backward(self, dy):
        x2 = self.x.reshape(-1, self.x.shape[-1])
        d2 = dy.reshape(-1, dy.shape[-1])
        self.W.g += x2.T @ d2
        self.b.g += d2.sum(0)
        return dy @ self.W.v.T


class Conv2d:
    """Conv with square kernel k, stride s, padding p, as im2col and one matmul. W: [O, C, k, k]."""

    def __init__(self, rng, c, o, k=3, s=1, p=1):
        self.k, self.s, self.p = k, s, p
        self.W = Param(rng.standard_normal((o, c, k, k)) * np.sqrt(2.0 / (c * k * k)))
        self.b = Param(np.zeros(o))

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        k, s, p = self.k, self.s, self.p
        n, c, h, w = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # N,C,OH,OW,k,k
        self.oh, self.ow = win.shape[2], win.shape[3]
        self.cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * self.oh * self.ow, c * k * k)
        self.xshape = x.shape
        o = self.W.v.shape[0]
        y = self.cols @ self.W.v.reshape(o, -1).T + self.b.v
        return y.reshape(n, self.oh, self.ow, o).transpose(0, 3, 1, 2)

    def backward(self, dy):
        k, s, p = self.k, self.s, self.p
        n, c, h, w = self.xshape
        o = self.W.v.shape[0]
        d2 = dy.transpose(0, 2, 3, 1).reshape(-1, o)
        self.W.g += (d2.T @ self.cols).reshape(self.W.v.shape)
        self.b.g += d2.sum(0)
        dcols = (d2 @ self.W.v.reshape(o, -1)).reshape(n, self.oh, self.ow, c, k, k)
        dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), np.float32)
        for i in range(k):
            for j in range(k):
                dxp[:, :, i:i + s * self.oh:s, j:j + s * self.ow:s] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dxp[:, :, p:p + h, p:p + w]


class Relu:
    def params(self):
        return []

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class LayerNorm:
    def __init__(self, d, eps=1e-5):
        self.g, self.b, self.eps = Param(np.ones(d)), Param(np.zeros(d)), eps

    def params(self):
        return [self.g, self.b]

    def forward(self, x):
        mu = x.mean(-1, keepdims=True)
        var = x.var(-1, keepdims=True)
        self.inv = 1.0 / np.sqrt(var + self.eps)
        self.xh = (x - mu) * self.inv
        return self.xh * self.g.v + self.b.v

    def backward(self, dy):
        d = dy.shape[-1]
        self.g.g += (dy * self.xh).reshape(-1, d).sum(0)
        self.b.g += dy.reshape(-1, d).sum(0)
        dxh = dy * self.g.v
        return self.inv * (dxh - dxh.mean(-1, keepdims=True) - self.xh * (dxh * self.xh).mean(-1, keepdims=True))


class Attention:
    """Single-head self-attention over [N, T, D]: softmax(q k^T / sqrt(D)) v, then an output projection."""

    def __init__(self, rng, d):
        self.q, self.k, self.v, self.o = (Linear(rng, d, d) for _ in range(4))
        self.scale = np.float32(1.0 / np.sqrt(d))

    def params(self):
        return [p for l in (self.q, self.k, self.v, self.o) for p in l.params()]

    def forward(self, x):
        self.qq, self.kk, self.vv = self.q.forward(x), self.k.forward(x), self.v.forward(x)
        s = self.qq @ self.kk.transpose(0, 2, 1) * self.scale
        s = s - s.max(-1, keepdims=True)
        e = np.exp(s)
        self.p = e / e.sum(-1, keepdims=True)
        return self.o.forward(self.p @ self.vv)

    def backward(self, dy):
        da = self.o.backward(dy)
        dp = da @ self.vv.transpose(0, 2, 1)
        dv = self.p.transpose(0, 2, 1) @ da
        ds = self.p * (dp - (dp * self.p).sum(-1, keepdims=True)) * self.scale
        dq = ds @ self.kk
        dk = ds.transpose(0, 2, 1) @ self.qq
        return self.q.backward(dq) + self.k.backward(dk) + self.v.backward(dv)


# ---- the two models ------------------------------------------------------------------------------

class CNN:
    def __init__(self, rng):
        self.c1, self.r1 = Conv2d(rng, 1, 16), Relu()
        self.c2, self.r2 = Conv2d(rng, 16, 32, s=2), Relu()
        self.fc = Linear(rng, 32 * 4 * 4, 10)

    def params(self):
        return self.c1.params() + self.c2.params() + self.fc.params()

    def forward(self, x):
        h = self.r2.forward(self.c2.forward(self.r1.forward(self.c1.forward(x))))
        return self.fc.forward(h.reshape(len(x), -1))

    def backward(self, d):
        d = self.fc.backward(d).reshape(-1, 32, 4, 4)
        self.c1.backward(self.r1.backward(self.c2.backward(self.r2.backward(d))))

    def onnx(self) -> onnx.ModelProto:
        inits, c = [], lambda n, a: inits.append(numpy_helper.from_array(np.asarray(a, np.float32), n)) or n
        nodes = [
            helper.make_node("Conv", ["x", c("conv1.w", self.c1.W.v), c("conv1.b", self.c1.b.v)], ["c1"], name="conv1",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", c("conv2.w", self.c2.W.v), c("conv2.b", self.c2.b.v)], ["c2"], name="conv2",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
            helper.make_node("Flatten", ["r2"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", c("fc.w", self.fc.W.v), c("fc.b", self.fc.b.v)], ["logits"], name="fc"),
        ]
        return finish(nodes, inits, "digits_cnn", [None, 1, 8, 8])


class Transformer:
    D, T, F = 32, 8, 64

    def __init__(self, rng):
        D, T, F = self.D, self.T, self.F
        self.emb = Linear(rng, 8, D)
        self.pos = Param(rng.standard_normal((T, D)) * 0.1)
        self.ln1, self.attn = LayerNorm(D), Attention(rng, D)
        self.ln2, self.fc1, self.act, self.fc2 = LayerNorm(D), Linear(rng, D, F), Relu(), Linear(rng, F, D)
        self.head = Linear(rng, D, 10)

    def params(self):
        return (self.emb.params() + [self.pos] + self.ln1.params() + self.attn.params() + self.ln2.params() +
                self.fc1.params() + self.fc2.params() + self.head.params())

    def forward(self, x):
        e = self.emb.forward(x.reshape(len(x), 8, 8)) + self.pos.v
        r1 = e + self.attn.forward(self.ln1.forward(e))
        r2 = r1 + self.fc2.forward(self.act.forward(self.fc1.forward(self.ln2.forward(r1))))
        return self.head.forward(r2.mean(1))

    def backward(self, d):
        dr2 = np.repeat(self.head.backward(d)[:, None, :] / self.T, self.T, axis=1)
        dr1 = dr2 + self.ln2.backward(self.fc1.backward(self.act.backward(self.fc2.backward(dr2))))
        de = dr1 + self.ln1.backward(self.attn.backward(dr1))
        self.pos.g += de.sum(0)
        self.emb.backward(de)

    def onnx(self) -> onnx.ModelProto:
        inits, c = [], lambda n, a: inits.append(numpy_helper.from_array(np.asarray(a), n)) or n
        f = np.float32
        a = self.attn
        N = helper.make_node

        def linear(name, x, lin, out):
            return [N("MatMul", [x, c(f"{name}.w", lin.W.v.astype(f))], [f"{out}_mm"], name=f"{name}"),
                    N("Add", [f"{out}_mm", c(f"{name}.b", lin.b.v.astype(f))], [out], name=f"{name}_bias")]

        nodes = [N("Reshape", ["x", c("tokens_shape", np.array([0, 8, 8], np.int64))], ["tokens"], name="tokens")]
        nodes += linear("embed", "tokens", self.emb, "emb0")
        nodes += [N("Add", ["emb0", c("pos", self.pos.v.astype(f))], ["emb"], name="pos_add"),
                  N("LayerNormalization", ["emb", c("ln1.g", self.ln1.g.v), c("ln1.b", self.ln1.b.v)], ["ln1"], name="ln1",
                    axis=-1, epsilon=1e-5)]
        nodes += linear("attn.q", "ln1", a.q, "q") + linear("attn.k", "ln1", a.k, "k") + linear("attn.v", "ln1", a.v, "v")
        nodes += [N("Transpose", ["k"], ["kt"], name="attn.kt", perm=[0, 2, 1]),
                  N("MatMul", ["q", "kt"], ["qk"], name="attn.qk"),
                  N("Mul", ["qk", c("attn.scale", np.array(a.scale, f))], ["scores"], name="attn.scale_mul"),
                  N("Softmax", ["scores"], ["probs"], name="attn.softmax", axis=-1),
                  N("MatMul", ["probs", "v"], ["ctx"], name="attn.pv")]
        nodes += linear("attn.o", "ctx", a.o, "attn_out")
        nodes += [N("Add", ["emb", "attn_out"], ["res1"], name="res1"),
                  N("LayerNormalization", ["res1", c("ln2.g", self.ln2.g.v), c("ln2.b", self.ln2.b.v)], ["ln2"], name="ln2",
                    axis=-1, epsilon=1e-5)]
        nodes += linear("mlp.fc1", "ln2", self.fc1, "h1")
        nodes += [N("Relu", ["h1"], ["h1r"], name="mlp.relu")]
        nodes += linear("mlp.fc2", "h1r", self.fc2, "h2")
        nodes += [N("Add", ["res1", "h2"], ["res2"], name="res2"),
                  N("ReduceMean", ["res2"], ["pooled"], name="pool", axes=[1], keepdims=0),
                  N("Gemm", ["pooled", c("head.w", self.head.W.v.astype(f)), c("head.b", self.head.b.v.astype(f))], ["logits"],
                    name="head")]
        return finish(nodes, inits, "digits_transformer", [None, 1, 8, 8])


def finish(nodes, inits, name, in_shape) -> onnx.ModelProto:
    in_shape = ["N" if d is None else d for d in in_shape]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln int8_study")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


# ---- training ------------------------------------------------------------------------------------

def train(model, train_set, epochs: int, lr: float, seed: int, batch: int = 64, wd: float = 1e-4):
    """Adam on softmax cross-entropy, a cosine-decayed learning rate, decoupled weight decay."""
    x, y = train_set
    rng = np.random.default_rng(seed)
    params = model.params()
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    steps = epochs * ((len(x) + batch - 1) // batch)
    for ep in range(epochs):
        perm = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            logits = model.forward(x[idx])
            z = logits - logits.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            d = p
            d[np.arange(len(idx)), y[idx]] -= 1
            for q in params:
                q.g[...] = 0
            model.backward((d / len(idx)).astype(np.float32))
            t += 1
            rate = lr * 0.5 * (1 + np.cos(np.pi * t / steps))
            for q in params:
                q.m = b1 * q.m + (1 - b1) * q.g
                q.s = b2 * q.s + (1 - b2) * q.g * q.g
                mh, sh = q.m / (1 - b1 ** t), q.s / (1 - b2 ** t)
                q.v = (q.v - rate * (mh / (np.sqrt(sh) + eps) + wd * q.v)).astype(np.float32)
    return model


def accuracy(model, data) -> float:
    x, y = data
    return float((model.forward(x).argmax(1) == y).mean())


def train_both(seed: int = 0, log=print):
    train_set, calib, test = digits_split(seed)
    out = {}
    for name, cls, epochs, lr in (("cnn", CNN, 40, 3e-3), ("transformer", Transformer, 100, 2e-3)):
        t0 = time.time()
        model = train(cls(np.random.default_rng(seed + 1)), train_set, epochs, lr, seed + 2)
        log(f"trained {name}: test top-1 {100 * accuracy(model, test):.2f} % ({time.time() - t0:.1f} s)")
        out[name] = model
    return out, (train_set, calib, test)


if __name__ == "__main__":
    train_both()
