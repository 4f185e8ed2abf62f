"""ResNet-50 for the zoo (seed 001: vision models through ONNX to an engine). torchvision's ResNet
with Bottleneck blocks, [3, 4, 6, 3] blocks per stage as in resnet50 (all 53 convolutions); tiny:
stage widths 8/16/32/64 (outputs 4x that) at 64x64; full: torchvision.models.resnet50's
architecture at 224x224. Random weights (seed 1), BatchNorm statistics settled on random inputs,
batch axis dynamic.
    python zoo/export/resnet50.py --size tiny|full [--out DIR]"""
from cnn_common import resnet_main

if __name__ == "__main__":
    resnet_main("resnet50", "bottleneck", [3, 4, 6, 3], [8, 16, 32, 64], 64, seed=1)
