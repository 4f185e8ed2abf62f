"""Exports the Whisper encoder (transformers WhisperEncoder, random weights, seed 0) to
zoo/models/whisper_encoder.onnx.

Seed 001 (audio path: the Whisper-tiny encoder compiled for FP16). Exercises the audio front
end, two Conv1d + Gelu (the second with stride 2), fixed sinusoidal positions, pre-LN encoder
layers (LayerNormalization, self-attention without a mask, Gelu MLP) and a final LayerNorm.
    --size tiny  80 mel bins x 200 frames, d_model 64, 2 layers, 2 heads, FFN 128 (committed)
    --size full  whisper-tiny: 80 mel bins x 3000 frames, d_model 384, 4 layers, 6 heads, FFN 1536
Input input_features (batch, 80, frames); output last_hidden_state (batch, frames / 2, d_model).
WhisperEncoder only accepts exactly 2 x max_source_positions frames, so the frame axis is fixed;
the batch axis is dynamic. Default opset 23 through the dynamo exporter (ONNX Attention and Gelu
ops); --opset 17..20 uses the TorchScript exporter.
Run with /tmp/tvenv/bin/python zoo/export/whisper_encoder.py [--size tiny|full] [--out DIR]."""
from pathlib import Path

import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

import _transformer_export as tx


class EncoderOutput(torch.nn.Module):
    """last_hidden_state alone, as a tensor."""

    def __init__(self, encoder: WhisperEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_features):
        return self.encoder(input_features, return_dict=True).last_hidden_state


def config(size: str) -> WhisperConfig:
    if size == "full":
        return WhisperConfig(num_mel_bins=80, d_model=384, encoder_layers=4, encoder_attention_heads=6,
                             encoder_ffn_dim=1536, max_source_positions=1500)
    return WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=2,
                         encoder_ffn_dim=128, max_source_positions=100)


def main():
    a = tx.parse_args(__doc__, "whisper_encoder")
    opset = a.opset or 23
    tx.seed_everything(0)
    cfg = config(a.size)
    cfg._attn_implementation = "sdpa"
    encoder = WhisperEncoder(cfg)
    # Whisper's init (std 0.02, LayerNorms at 1 and 0, zero biases) leaves the output nearly
    # independent of the mel input: variance-keeping projections and random 1-D parameters
    # instead, so that the input matters and scales and biases are tested. Gain 2: at gain 1 the
    # sinusoidal positions (amplitude 1) still outweigh the conv features (outputs of two
    # different inputs at cosine 0.98; 0.65 at gain 2), unlike in a trained Whisper.
    tx.reinit_projections(encoder, gain=2.0)
    tx.perturb_vectors(encoder, 0.1)
    model = EncoderOutput(encoder).eval()
    frames = 2 * cfg.max_source_positions
    # a log-mel spectrogram lies in about [-1, 1.5] after Whisper's normalisation; batch 2 keeps
    # torch.export from specialising the batch axis to 1
    x = torch.rand(2, cfg.num_mel_bins, frames) * 2 - 1
    out = Path(a.out) / f"{a.name}.onnx"
    tx.export(model, (x,), ["input_features"], ["last_hidden_state"], out, opset,
              dynamic_axes={"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"}}, dynamo=opset > 20)
    tx.describe(out)
    tx.check_against_torch(model, (x,), ["input_features"], out)
    tx.report_sensitivity(model, (x[:1],), (torch.rand_like(x[:1]) * 2 - 1,), ["last_hidden_state"])


if __name__ == "__main__":
    main()
