"""test_npy_numpy.py — kiln's .npy/.npz reader and writer (src/io/npy.c) against numpy itself.

numpy writes the files (np.save, np.savez, np.savez_compressed, format versions 1.0-3.0, Fortran
order, big-endian, scalars, 0-sized arrays); the C helper build/tests/npy_roundtrip reads each
with kiln and writes it back; numpy reads the result and every array must match exactly
(dtype, shape, bytes). Refused dtypes must fail with a message naming them, and damaged files
must fail without crashing. The helper is found under $KILN_BUILD_DIR (default: build/ at the
repo root); build it first:  cmake --build build --target npy_roundtrip
    /tmp/venv/bin/python -m pytest tests/unit/test_npy_numpy.py
"""
from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent.parent
BUILD = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build"))
TOOL = BUILD / "tests" / "npy_roundtrip"

DTYPES = ["<f4", "<f8", "<f2", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "|b1"]


def tool() -> Path:
    assert TOOL.is_file(), f"{TOOL} is missing: build it with `cmake --build {BUILD} --target npy_roundtrip` (or set KILN_BUILD_DIR)"
    return TOOL


def run(src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    p = subprocess.run([str(tool()), str(src), str(dst), *extra], capture_output=True, text=True, timeout=60)
    assert p.returncode >= 0, f"npy_roundtrip crashed with signal {-p.returncode} on {src}: {p.stderr}"
    return p


def roundtrip(src: Path, dst: Path, *extra: str) -> dict[str, np.ndarray]:
    p = run(src, dst, *extra)
    assert p.returncode == 0, f"npy_roundtrip failed on {src}: {p.stderr}"
    with np.load(dst, allow_pickle=False) as z:
        if isinstance(z, np.ndarray):
            return {"arr_0": z}
        return {k: z[k] for k in z.files}


def sample(dt: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dt)
    if not dtype.isnative:
        return sample(dtype.newbyteorder("=").str, shape, seed).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind == "f":
        a = rng.standard_normal(size=shape).astype(dtype)
        flat = a.reshape(-1)
        if flat.size >= 4:  # specials survive bit for bit
            flat[:4] = [np.inf, -np.inf, np.nan, -0.0]
        return a
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if a.size >= 2:
        a.reshape(-1)[:2] = [info.min, info.max]
    return a


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    want_c = np.array(want, order="C").astype(want.dtype.newbyteorder("="), copy=False)
    assert got.dtype == want_c.dtype, f"{what}: dtype {got.dtype} != {want_c.dtype}"
    assert got.shape == want_c.shape, f"{what}: shape {got.shape} != {want_c.shape}"
    assert got.flags.c_contiguous, f"{what}: not C order"
    assert got.tobytes() == want_c.tobytes(), f"{what}: bytes differ"


def test_save_every_dtype(tmp_path: Path) -> None:
    for dt in DTYPES:
        for shape in [(2, 3, 5), (7,), (), (0,), (3, 0, 2)]:
            a = sample(dt, shape)
            src = tmp_path / "in.npy"
            np.save(src, a)
            got = roundtrip(src, tmp_path / "out.npz")
            assert list(got) == ["arr_0"]
            assert_same(got["arr_0"], a, f"np.save {dt}{shape}")


def test_npy_output_is_byte_identical_to_np_save(tmp_path: Path) -> None:
    for dt in DTYPES:
        for shape in [(4, 3), (5,), (), (0, 2), (1, 2, 1, 2, 1, 2, 1, 2)]:
            a = sample(dt, shape, seed=1)
            src = tmp_path / "in.npy"
            np.save(src, a)
            dst = tmp_path / "out.npy"
            p = run(src, dst)
            assert p.returncode == 0, p.stderr
            assert dst.read_bytes() == src.read_bytes(), f"{dt}{shape}: kiln's .npy differs from np.save's"


def test_savez_stored(tmp_path: Path) -> None:
    arrays = {f"x_{dt[1:]}": sample(dt, (3, 4), seed=i) for i, dt in enumerate(DTYPES)}
    arrays["scalar"] = np.array(2.5, np.float32)
    arrays["empty"] = np.zeros((0, 5), np.int64)
    arrays["with.dots and spaces"] = np.arange(6, dtype=np.int16).reshape(2, 3)
    src = tmp_path / "in.npz"
    np.savez(src, **arrays)
    dst = tmp_path / "out.npz"
    got = roundtrip(src, dst)
    assert list(got) == list(arrays), "names or order changed"
    for k, a in arrays.items():
        assert_same(got[k], a, f"savez {k}")
    with zipfile.ZipFile(dst) as z:
        assert z.testzip() is None
        assert [i.filename for i in z.infolist()] == [k + ".npy" for k in arrays]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())


def test_savez_positional_names(tmp_path: Path) -> None:
    a, b = sample("<f4", (2, 2)), sample("<i8", (3,))
    src = tmp_path / "in.npz"
    np.savez(src, a, b)
    got = roundtrip(src, tmp_path / "out.npz")
    assert list(got) == ["arr_0", "arr_1"]
    assert_same(got["arr_0"], a, "arr_0")
    assert_same(got["arr_1"], b, "arr_1")


def test_savez_compressed(tmp_path: Path) -> None:
    arrays = {f"c{i}": sample(dt, (17, 9), seed=i) for i, dt in enumerate(DTYPES)}
    arrays["zeros"] = np.zeros((1000, 100), np.float32)  # compresses about 1000:1
    src = tmp_path / "in.npz"
    np.savez_compressed(src, **arrays)
    for extra in [(), ("--compress",)]:
        dst = tmp_path / "out.npz"
        got = roundtrip(src, dst, *extra)
        for k, a in arrays.items():
            assert_same(got[k], a, f"savez_compressed {k} {extra}")
        with zipfile.ZipFile(dst) as z:
            assert z.testzip() is None
            want = zipfile.ZIP_DEFLATED if extra else zipfile.ZIP_STORED
            assert all(i.compress_type == want for i in z.infolist())


def test_fortran_order(tmp_path: Path) -> None:
    for dt in ["<f4", "|u1", "<i8", "<f2", "|b1"]:
        for shape in [(3, 4), (2, 3, 5), (2, 1, 3, 1, 2), (1, 6), (6, 1)]:
            a = np.asfortranarray(sample(dt, shape, seed=3))
            src = tmp_path / "f.npy"
            np.save(src, a)
            assert b"'fortran_order': True" in src.read_bytes()[:128] or a.flags.c_contiguous
            got = roundtrip(src, tmp_path / "out.npz")
            assert_same(got["arr_0"], a, f"fortran {dt}{shape}")
    # inside an npz too
    a = np.asfortranarray(sample("<f8", (4, 5), seed=4))
    np.savez(tmp_path / "f.npz", a=a)
    assert_same(roundtrip(tmp_path / "f.npz", tmp_path / "out.npz")["a"], a, "fortran in npz")


def test_big_endian(tmp_path: Path) -> None:
    for dt in [">f4", ">f8", ">f2", ">i2", ">u4", ">i8", ">u8"]:
        a = sample(dt, (3, 5), seed=5)
        src = tmp_path / "be.npy"
        np.save(src, a)
        got = roundtrip(src, tmp_path / "out.npz")["arr_0"]
        assert_same(got, a, f"big-endian {dt}")
        assert got.dtype.byteorder in ("<", "=", "|")


def test_format_versions(tmp_path: Path) -> None:
    for version in [(1, 0), (2, 0), (3, 0)]:
        a = sample("<f4", (4, 6), seed=6)
        src = tmp_path / f"v{version[0]}.npy"
        with open(src, "wb") as f:
            np.lib.format.write_array(f, a, version=version)
        assert src.read_bytes()[6] == version[0]
        assert_same(roundtrip(src, tmp_path / "out.npz")["arr_0"], a, f"version {version}")


def test_many_dims_and_big_array(tmp_path: Path) -> None:
    arrays = {
        "rank8": sample("<f4", (2, 1, 3, 1, 2, 1, 2, 2), seed=7),
        "big": sample("<f4", (1024, 1024), seed=8),  # 4 MiB
        "one": np.ones((1,), np.int32),
    }
    np.savez(tmp_path / "in.npz", **arrays)
    got = roundtrip(tmp_path / "in.npz", tmp_path / "out.npz")
    for k, a in arrays.items():
        assert_same(got[k], a, k)


@pytest.mark.parametrize(
    "array, needle",
    [
        (np.array(["ab", "cde"]), "'<U3'"),
        (np.array([b"ab", b"cde"]), "'|S3'"),
        (np.array([1 + 2j], np.complex64), "'<c8'"),
        (np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]), "structured"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "'<M8[D]'"),
        (np.zeros(2, dtype="V3"), "'|V3'"),
    ],
    ids=["unicode", "bytes", "complex", "structured", "datetime", "void"],
)
def test_refused_dtypes(tmp_path: Path, array: np.ndarray, needle: str) -> None:
    for kind in ["npy", "npz"]:
        src = tmp_path / f"bad.{kind}"
        if kind == "npy":
            np.save(src, array)
        else:
            np.savez(src, good=np.ones(2, np.float32), input=array)
        p = run(src, tmp_path / "out.npz")
        assert p.returncode == 1, f"{array.dtype} was not refused: {p.stderr}"
        assert "unsupported" in p.stderr and needle in p.stderr and "bad." + kind in p.stderr, p.stderr
        if kind == "npz":
            assert "member 'input.npy'" in p.stderr, p.stderr
        assert not (tmp_path / "out.npz").exists()


def test_object_array_refused(tmp_path: Path) -> None:
    src = tmp_path / "obj.npy"
    np.save(src, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    p = run(src, tmp_path / "out.npz")
    assert p.returncode == 1 and "'|O'" in p.stderr and "unsupported" in p.stderr, p.stderr


def test_damaged_files_fail_cleanly(tmp_path: Path) -> None:
    arrays = {"a": sample("<f4", (8, 8), seed=9), "b": sample("<i8", (5,), seed=10)}
    for save in [np.savez, np.savez_compressed]:
        src = tmp_path / "good.npz"
        save(src, **arrays)
        data = src.read_bytes()
        cuts = sorted(set(range(0, len(data), max(1, len(data) // 97))) | {len(data) - 1, len(data) - 22})
        for cut in cuts:
            bad = tmp_path / "cut.npz"
            bad.write_bytes(data[:cut])
            p = run(bad, tmp_path / "out.npz")
            assert p.returncode == 1, f"{save.__name__} cut at {cut}/{len(data)} was accepted"
            assert "cut.npz" in p.stderr, p.stderr
    a = sample("<f8", (10, 10), seed=11)
    np.save(tmp_path / "good.npy", a)
    data = (tmp_path / "good.npy").read_bytes()
    for cut in range(0, len(data), 7):
        (tmp_path / "cut.npy").write_bytes(data[:cut])
        p = run(tmp_path / "cut.npy", tmp_path / "out.npz")
        assert p.returncode == 1 and "cut.npy" in p.stderr, f"cut at {cut}: {p.stderr}"
