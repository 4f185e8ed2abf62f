"""CLIP as deployed scores a varying number of images against a varying number of texts. One
FP32 engine of the zoo's tiny clip with a profile of 1..4 images and 1..6 texts, run at several
(images, texts) pairs, unequal ones included, against ONNX Runtime on fresh random inputs:
shapes equal, every output at cosine >= 0.99999. The harness (test_zoo.py) covers only a
profile fixed at one shape."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402
import test_zoo as zoo  # noqa: E402

PAIRS = [(3, 5), (1, 6), (4, 1), (2, 2)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    spec = zoo.load_spec(zoo.ZOO / "clip.json")
    eng = tmp_path_factory.mktemp("clip") / "clip.kiln"
    r = kilnrun.run_kiln(["build", spec["path"], "-o", eng,
                          "--min-shapes", "pixel_values:1x3x32x32,input_ids:1x8",
                          "--opt-shapes", "pixel_values:2x3x32x32,input_ids:2x8",
                          "--max-shapes", "pixel_values:4x3x32x32,input_ids:6x8"], timeout=300)
    assert r.kind == "ok", f"clip engine with a 1..4 x 1..6 profile: {r.message}"
    return spec, eng


@pytest.mark.parametrize("images,texts", PAIRS, ids=[f"{i}img_{t}txt" for i, t in PAIRS])
def test_clip_dynamic_counts(engine, images, texts, tmp_path):
    spec, eng = engine
    vocab = spec["inputs"]["input_ids"]["high"]
    feeds = {"pixel_values": zoo.RNG.uniform(-1, 1, (images, 3, 32, 32)).astype(np.float32),
             "input_ids": zoo.RNG.integers(0, vocab, (texts, 8)).astype(np.int64)}
    ref = zoo.ort_run(spec["path"], feeds)
    kilnrun.save_npz(tmp_path / "in.npz", feeds)
    r = kilnrun.run_kiln(["run", eng, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "out.npz"])
    assert r.kind == "ok", f"clip at {images} images, {texts} texts: {r.message}"
    got = kilnrun.load_npz(tmp_path / "out.npz")
    for name, want in ref.items():
        assert got[name].shape == want.shape, f"{name}: kiln {got[name].shape} vs ORT {want.shape}"
        cos = zoo.cosine(got[name], want)
        assert cos >= 0.99999, f"{name} at {images} images, {texts} texts: cosine {cos:.7f}"
