"""Exports torchvision's VisionTransformer (random weights, seed 0) to zoo/models/vit_b_16.onnx.

Seed 001 (ONNX -> TensorRT for vision models: ViT). Exercises the transformer encoder: patch
embedding Conv, class token Concat, position embedding, pre-LN blocks of LayerNorm,
multi-head self-attention (torch's MultiheadAttention) and an MLP with exact (erf) Gelu.
    --size tiny  image 32x32, patch 8, 2 layers, hidden 64, 2 heads, MLP 128, 10 classes (committed)
    --size full  vit_b_16: image 224, patch 16, 12 layers, hidden 768, 12 heads, MLP 3072, 1000 classes
The batch axis is dynamic. Default: opset 23 through the dynamo exporter, which writes the ONNX
Attention (scaled_dot_product_attention) and Gelu ops themselves. --opset 17..20 uses the
TorchScript exporter instead (dynamo=False), which decomposes attention into MatMul / Mul /
Softmax / MatMul and Gelu into Erf arithmetic, for kiln's fusion passes to find; the zoo commits
that form too, as vit_b_16_opset17 (--opset 17 --name vit_b_16_opset17).
Run with /tmp/tvenv/bin/python zoo/export/vit_b_16.py [--size tiny|full] [--out DIR]."""
from pathlib import Path

import torch
from torchvision.models import VisionTransformer, vit_b_16

import _transformer_export as tx


def build(size: str) -> tuple[torch.nn.Module, int]:
    if size == "full":
        model, res = vit_b_16(weights=None), 224
    else:
        model, res = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64,
                                       mlp_dim=128, num_classes=10), 32
    # torchvision starts the head and the class token at zero (for fine-tuning), LayerNorms at
    # 1 and 0: random instead, or every logit is 0 and no scale or bias is tested; and
    # variance-keeping projections, so that the logits depend on the image.
    tx.reinit_projections(model)
    tx.perturb_vectors(model, 0.1)
    with torch.no_grad():
        torch.nn.init.normal_(model.heads.head.weight, std=model.hidden_dim ** -0.5)
        torch.nn.init.normal_(model.class_token, std=0.5)
    return model, res


def main():
    a = tx.parse_args(__doc__, "vit_b_16")
    opset = a.opset or 23
    tx.seed_everything(0)
    model, res = build(a.size)
    model.eval()
    # batch 2: torch.export specialises dims of size 1, so a batch of 1 would not stay dynamic
    x = torch.rand(2, 3, res, res) * 2 - 1
    out = Path(a.out) / f"{a.name}.onnx"
    tx.export(model, (x,), ["pixel_values"], ["logits"], out, opset,
              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, dynamo=opset > 20)  # TorchScript stops at opset 20
    tx.describe(out)
    tx.check_against_torch(model, (x,), ["pixel_values"], out)
    tx.report_sensitivity(model, (x[:1],), (torch.rand_like(x[:1]) * 2 - 1,), ["logits"])


if __name__ == "__main__":
    main()
