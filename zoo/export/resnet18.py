"""ResNet-18 for the zoo (seed 004: an INT8 ResNet-18 classifier calibrated on an image folder).
torchvision's ResNet with BasicBlocks, [2, 2, 2, 2] blocks per stage as in resnet18; tiny: stage
widths 12/24/48/96 (awkward, not powers of two) at 64x64; full: torchvision.models.resnet18's
architecture at 224x224. Random weights (seed 4), BatchNorm statistics settled on random inputs,
batch axis dynamic (the seed builds for batches up to 32).
    python zoo/export/resnet18.py --size tiny|full [--out DIR]"""
from cnn_common import resnet_main

if __name__ == "__main__":
    resnet_main("resnet18", "basic", [2, 2, 2, 2], [12, 24, 48, 96], 64, seed=4)
