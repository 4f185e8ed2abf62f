"""YOLOv8n for the zoo (seed 001: YOLO-v8n exported to ONNX and built into FP16/INT8 engines).

The published YOLOv8 detection architecture, written here from its public description (the
yolov8.yaml layer table and the module definitions of the paper/docs), with random weights:

  backbone  Conv(64,3,2) Conv(128,3,2) C2f(128,3,shortcut) Conv(256,3,2) C2f(256,6,shortcut)
            Conv(512,3,2) C2f(512,6,shortcut) Conv(1024,3,2) C2f(1024,3,shortcut) SPPF(1024,5)
  neck      Upsample x2 (nearest) + Concat P4 -> C2f(512,3); Upsample x2 + Concat P3 -> C2f(256,3) [P3 out]
            Conv(256,3,2) + Concat -> C2f(512,3) [P4 out]; Conv(512,3,2) + Concat SPPF -> C2f(1024,3) [P5 out]
  head      Detect: per level a box branch (Conv3x3, Conv3x3, Conv1x1 -> 4*16 distance bins) and a class
            branch (Conv3x3, Conv3x3, Conv1x1 -> 80 classes); DFL = softmax over the 16 bins and a 1x1
            conv whose weights are 0..15 (the expected distance); anchors at cell centres, strides
            8/16/32; boxes as (cx, cy, w, h) in input pixels, class scores through a sigmoid.
  output    [1, 84, N]: 4 box values + 80 class probabilities for each of the N anchor points.

Conv = Conv2d (no bias) + BatchNorm2d(eps 1e-3) + SiLU. Channel counts: make_divisible(c * width, 8);
repeats: max(round(n * depth), 1). yolov8n: width 0.25, depth 0.33, 640x640 (N = 8400).
Tiny (committed for CI): width 0.125, depth 0.33, max channels 512, 96x96 (N = 144 + 36 + 9 = 189),
and the Detect branches 32 wide (64 and 80 in yolov8n, which alone would make the file 2.4 MB).
The output keeps its 84 rows (80 classes).
    python zoo/export/yolov8n.py --size tiny|full [--out DIR]"""
import argparse
import math
from pathlib import Path

import torch
from torch import nn

from cnn_common import export, settle_batchnorm

REG_MAX = 16      # distance bins per box side
NUM_CLASSES = 80  # COCO


class Conv(nn.Module):
    """Conv2d (same padding, no bias) + BatchNorm2d + SiLU."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 Convs, with the input added back when asked and the widths allow it."""

    def __init__(self, c1, c2, shortcut):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3)
        self.cv2 = Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two halves: a 1x1 Conv whose output splits in two, n Bottlenecks chained on the
    second half, every intermediate result concatenated and mixed by a last 1x1 Conv."""

    def __init__(self, c1, c2, n, shortcut):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 stride-1 max pools, all four maps concatenated."""

    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Distribution focal loss decode: softmax over the REG_MAX bins of each box side, then the
    expectation sum(i * p_i) as a fixed 1x1 conv with weights 0..REG_MAX-1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(REG_MAX, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(REG_MAX, dtype=torch.float32).view(1, REG_MAX, 1, 1)

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, REG_MAX, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(feats, strides, offset=0.5):
    """Anchor points at the centre of every cell of every level (in cells), and each one's stride."""
    points, stride_col = [], []
    for f, s in zip(feats, strides):
        h, w = f.shape[2:]
        sx = torch.arange(w, dtype=f.dtype) + offset
        sy = torch.arange(h, dtype=f.dtype) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_col.append(torch.full((h * w, 1), s, dtype=f.dtype))
    return torch.cat(points).transpose(0, 1), torch.cat(stride_col).transpose(0, 1)


class Detect(nn.Module):
    """Decoupled head over P3/P4/P5 with DFL box decoding; returns [B, 4 + classes, anchors]."""

    def __init__(self, ch, strides=(8, 16, 32), branch_cap=None):
        super().__init__()
        self.strides = strides
        self.no = NUM_CLASSES + 4 * REG_MAX
        c2, c3 = max(16, ch[0] // 4, 4 * REG_MAX), max(ch[0], min(NUM_CLASSES, 100))
        if branch_cap:  # the tiny model only: these two widths are most of its weights
            c2, c3 = min(c2, branch_cap), min(c3, branch_cap)
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, NUM_CLASSES, 1)) for x in ch)
        self.dfl = DFL()

    def init_biases(self, imgsz):
        """YOLOv8's prior: box logits 1, class logits for about 5 objects in an image of imgsz."""
        with torch.no_grad():
            for a, b, s in zip(self.cv2, self.cv3, self.strides):
                a[-1].bias.fill_(1.0)
                b[-1].bias.fill_(math.log(5 / NUM_CLASSES / (imgsz / s) ** 2))

    def forward(self, feats):
        b = feats[0].shape[0]
        x = [torch.cat((self.cv2[i](f), self.cv3[i](f)), 1) for i, f in enumerate(feats)]
        x_cat = torch.cat([xi.view(b, self.no, -1) for xi in x], 2)
        anchors, strides = make_anchors(x, self.strides)
        box, cls = x_cat.split((4 * REG_MAX, NUM_CLASSES), 1)
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = anchors.unsqueeze(0) - lt, anchors.unsqueeze(0) + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)


class YOLOv8(nn.Module):
    def __init__(self, width, depth, max_channels=1024, head_cap=None):
        super().__init__()

        def ch(c):
            return int(math.ceil(min(c, max_channels) * width / 8) * 8)

        def n(k):
            return max(round(k * depth), 1)

        self.b0 = Conv(3, ch(64), 3, 2)
        self.b1 = Conv(ch(64), ch(128), 3, 2)
        self.b2 = C2f(ch(128), ch(128), n(3), True)
        self.b3 = Conv(ch(128), ch(256), 3, 2)
        self.b4 = C2f(ch(256), ch(256), n(6), True)          # P3
        self.b5 = Conv(ch(256), ch(512), 3, 2)
        self.b6 = C2f(ch(512), ch(512), n(6), True)          # P4
        self.b7 = Conv(ch(512), ch(1024), 3, 2)
        self.b8 = C2f(ch(1024), ch(1024), n(3), True)
        self.b9 = SPPF(ch(1024), ch(1024), 5)                # P5
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12 = C2f(ch(1024) + ch(512), ch(512), n(3), False)
        self.h15 = C2f(ch(512) + ch(256), ch(256), n(3), False)   # P3 out
        self.h16 = Conv(ch(256), ch(256), 3, 2)
        self.h18 = C2f(ch(256) + ch(512), ch(512), n(3), False)   # P4 out
        self.h19 = Conv(ch(512), ch(512), 3, 2)
        self.h21 = C2f(ch(512) + ch(1024), ch(1024), n(3), False)  # P5 out
        self.detect = Detect((ch(256), ch(512), ch(1024)), branch_cap=head_cap)

    def forward(self, x):
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h12 = self.h12(torch.cat((self.up(p5), p4), 1))
        h15 = self.h15(torch.cat((self.up(h12), p3), 1))
        h18 = self.h18(torch.cat((self.h16(h15), h12), 1))
        h21 = self.h21(torch.cat((self.h19(h18), p5), 1))
        return self.detect([h15, h18, h21])


def main():
    ap = argparse.ArgumentParser(description="Exports YOLOv8n (random weights) to ONNX, output [1, 84, N].")
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny",
                    help="tiny: width 0.125, 96x96, narrow head (committed for CI); full: yolov8n (width 0.25) at 640x640")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"), help="output folder")
    a = ap.parse_args()
    torch.manual_seed(8)
    if a.size == "tiny":
        model, res = YOLOv8(0.125, 0.33, max_channels=512, head_cap=32), 96
    else:
        model, res = YOLOv8(0.25, 0.33), 640   # 3,157,200 parameters, as the published yolov8n
    model.detect.init_biases(res)
    # BN statistics from inputs in [0, 1], the range of the images YOLO takes
    settle_batchnorm(model, (1, 3, res, res), seed=8, batches=2 if a.size == "full" else 4, low=0.0, high=1.0)
    suffix = "" if a.size == "tiny" else "_full"
    export(model, torch.zeros(1, 3, res, res), Path(a.out) / f"yolov8n{suffix}.onnx", "images", ["output0"])


if __name__ == "__main__":
    main()
