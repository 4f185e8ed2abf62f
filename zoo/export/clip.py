"""Exports a CLIP (transformers' CLIPModel, random weights, seed 0) to zoo/models/clip.onnx.

Seed 001 (ONNX -> TensorRT for vision models: CLIP). Both towers in one graph: a ViT image
tower (patch Conv, class token, pre-LN blocks, quick_gelu MLPs) and a causal text transformer
(token + position embeddings, causal mask, EOS pooling by argmax over the token ids), the two
projections, L2-normalised embeddings and logit_scale.exp() times their product.
    --size tiny  image 32x32, patch 8, text length 8, vocab 512, width 64, 2 layers and 2 heads
                 per tower, MLP 128, projection 32 (committed)
    --size full  ViT-B/32 CLIP (openai/clip-vit-base-patch32's shapes): image 224, patch 32, text
                 length 77, vocab 49408, widths 768 / 512, 12 layers each, projection 512
Inputs pixel_values (batch, 3, R, R) and input_ids (texts, L) int64; outputs logits_per_image
(batch, texts), logits_per_text, text_embeds, image_embeds. Batch and texts are dynamic.
Default opset 23 through the dynamo exporter (ONNX Attention ops); --opset 17..20 uses the
TorchScript exporter. Run with /tmp/tvenv/bin/python zoo/export/clip.py [--size tiny|full]."""
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

import _transformer_export as tx

INPUTS = ["pixel_values", "input_ids"]
OUTPUTS = ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]


class ClipOutputs(torch.nn.Module):
    """CLIPModel's four tensors as a plain tuple (the exporters want tensors, not ModelOutput)."""

    def __init__(self, clip: CLIPModel):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values, input_ids):
        o = self.clip(input_ids=input_ids, pixel_values=pixel_values, return_dict=True)
        return o.logits_per_image, o.logits_per_text, o.text_embeds, o.image_embeds


def config(size: str) -> tuple[CLIPConfig, int, int]:
    """The configuration, the image resolution and the text length."""
    if size == "full":
        text = CLIPTextConfig(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                              num_attention_heads=8, max_position_embeddings=77)
        vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                  num_attention_heads=12, image_size=224, patch_size=32)
        return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=512), 224, 77
    text = CLIPTextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=8)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32), 32, 8


def main():
    a = tx.parse_args(__doc__, "clip")
    opset = a.opset or 23
    tx.seed_everything(0)
    cfg, res, length = config(a.size)
    cfg._attn_implementation = "sdpa"
    clip = CLIPModel(cfg)
    # CLIP's own init (std 0.02, LayerNorms at 1 and 0, zero biases) leaves the image embedding
    # nearly independent of the image: variance-keeping projections and random 1-D parameters
    # instead, so that the inputs matter and scales and biases are tested.
    tx.reinit_projections(clip)
    tx.perturb_vectors(clip, 0.1)
    model = ClipOutputs(clip).eval()
    # two images and three texts: torch.export would specialise dims of size 1, and unequal
    # counts keep the logits matrix from being square (a transposition bug would show)
    x = torch.rand(2, 3, res, res) * 2 - 1
    ids = torch.randint(0, cfg.text_config.vocab_size, (3, length), dtype=torch.int64)
    out = Path(a.out) / f"{a.name}.onnx"
    dyn = {"pixel_values": {0: "batch"}, "input_ids": {0: "texts"}, "logits_per_image": {0: "batch", 1: "texts"},
           "logits_per_text": {0: "texts", 1: "batch"}, "text_embeds": {0: "texts"}, "image_embeds": {0: "batch"}}
    tx.export(model, (x, ids), INPUTS, OUTPUTS, out, opset, dynamic_axes=dyn, dynamo=opset > 20)
    tx.describe(out)
    tx.check_against_torch(model, (x, ids), INPUTS, out)
    ids2 = torch.randint(0, cfg.text_config.vocab_size, ids.shape, dtype=torch.int64)
    tx.report_sensitivity(model, (x, ids), (torch.rand_like(x) * 2 - 1, ids2), OUTPUTS)


if __name__ == "__main__":
    main()
