"""kilnrun.py — runs the `kiln` command line the way the Python tests need it, and compares arrays.

Shared by tests/conformance/run_node_tests.py (a plain script) and the pytest suites under
tests/models/ (through tests/conftest.py). It does not build kiln and never skips: a missing
binary or data directory is reported as an error that names the path and how to fix it.

The contract it drives:
    kiln run MODEL.onnx --inputs IN.npz --output OUT.npz
IN.npz keys are graph input names, OUT.npz keys graph output names. Exit 0 on success; otherwise
non-zero and a one-line message on stderr, "kiln: <status name>: <what>", where the status name is
one of STATUS_NAMES (src/core/status.c). A process killed by a signal, or one whose stderr carries
a sanitizer report, is a crash.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
import signal
import subprocess
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# kiln_status_name() in src/core/status.c.
STATUS_NAMES = (
    "invalid argument",
    "invalid model",
    "unsupported",
    "i/o error",
    "out of memory",
    "runtime error",
    "internal error",
)
_STATUS_RE = re.compile(r"^(?:kiln:\s*)?(" + "|".join(re.escape(s) for s in STATUS_NAMES) + r"):")
# Sanitizer reports: ASan/LSan/TSan/MSan "==123==ERROR: AddressSanitizer: ...", and UBSan
# "src/x.c:12:5: runtime error: ..." (not to be confused with kiln's own "kiln: runtime error: ...").
_SANITIZER_RE = re.compile(r"ERROR: (?:Address|Leak|Thread|Memory)Sanitizer|^\S+?:\d+(?::\d+)?: runtime error: ",
                           re.MULTILINE)


class MissingPrerequisite(RuntimeError):
    """The kiln binary or a data directory is not where it should be."""


def kiln_build_dir() -> Path:
    return Path(os.environ.get("KILN_BUILD_DIR") or REPO / "build")


def kiln_binary(explicit: str | os.PathLike | None = None) -> Path:
    """The kiln executable: `explicit`, else $KILN_BIN (e.g. build/kiln-san, the sanitizer build),
    else $KILN_BUILD_DIR/kiln, else <repo>/build/kiln."""
    if explicit:
        path, how = Path(explicit), "given explicitly"
    elif os.environ.get("KILN_BIN"):
        path, how = Path(os.environ["KILN_BIN"]), "from $KILN_BIN"
    else:
        path, how = kiln_build_dir() / "kiln", "$KILN_BUILD_DIR/kiln" if os.environ.get("KILN_BUILD_DIR") else "the default"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise MissingPrerequisite(
            f"kiln binary not found or not executable: {path} ({how}; "
            f"build it: cmake -S {REPO} -B build && cmake --build build -j; "
            f"or set KILN_BUILD_DIR to the build directory, or KILN_BIN to the binary)"
        )
    return path.resolve()


def shared_dir() -> Path:
    """$KILN_SHARED_DIR, else the `shared` directory beside the repository clone."""
    return Path(os.environ.get("KILN_SHARED_DIR") or REPO.parent / "shared")


# ---- .npz in and out ----------------------------------------------------------------------------

def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Writes arrays as numpy's np.savez does (stored zip of NAME.npy members).

    Written by hand rather than through np.savez(**arrays) so that any tensor name works as a key,
    including names that collide with np.savez's own parameters ("file", "allow_pickle")."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            # np.asarray, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,).
            np.lib.format.write_array(buf, np.asarray(arr, order="C"), allow_pickle=False)
            zf.writestr(name + ".npy", buf.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads an npz; 2-byte void arrays are bf16 (kiln writes bf16 as ml_dtypes does, '<V2')."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    return {k: (v.view(_bf16()) if v.dtype.kind == "V" and v.dtype.itemsize == 2 else v) for k, v in out.items()}


# ---- running kiln --------------------------------------------------------------------------------

@dataclasses.dataclass
class KilnRun:
    kind: str            # "ok", "error", "unsupported", "crash", "timeout"
    returncode: int | None
    stdout: str
    stderr: str
    status: str | None   # the status name parsed from the message, e.g. "invalid model"
    message: str         # the one-line message (or a description of the crash/timeout)
    seconds: float

    def describe(self) -> str:
        return f"{self.kind} (rc={self.returncode}): {self.message}"


def _message_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if _STATUS_RE.match(ln):
            return ln
    return lines[-1] if lines else ""


def parse_status(line: str) -> str | None:
    m = _STATUS_RE.match(line.strip())
    return m.group(1) if m else None


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_kiln(args: list[str], *, binary: str | os.PathLike | None = None, timeout: float = 60,
             cwd: str | os.PathLike | None = None) -> KilnRun:
    """Runs `kiln ARGS...` and classifies the outcome. Never raises for what kiln does."""
    import time

    exe = str(kiln_binary(binary))
    t0 = time.monotonic()
    try:
        p = subprocess.run([exe, *map(str, args)], capture_output=True, timeout=timeout, cwd=cwd,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode("utf-8", "replace")
        return KilnRun("timeout", None, (e.stdout or b"").decode("utf-8", "replace"), err, None,
                       f"timed out after {timeout:g} s", time.monotonic() - t0)
    dt = time.monotonic() - t0
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0:
        return KilnRun("crash", p.returncode, out, err, None,
                       f"killed by {signal_name(p.returncode)}" + (f"; stderr: {_message_line(err)[:300]}" if err.strip() else ""),
                       dt)
    m = _SANITIZER_RE.search(err)
    if m:
        first = err[err.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
        return KilnRun("crash", p.returncode, out, err, None, f"sanitizer: {first.strip()[:300]}", dt)
    line = _message_line(err)
    status = parse_status(line)
    if p.returncode == 0:
        return KilnRun("ok", 0, out, err, None, line, dt)
    if status == "unsupported":
        return KilnRun("unsupported", p.returncode, out, err, status, line, dt)
    return KilnRun("error", p.returncode, out, err, status, line or "(no message on stderr)", dt)


def shapes_arg(inputs: dict[str, np.ndarray]) -> str:
    """`--shapes` for kiln build: a fixed profile at these arrays' shapes ("x:1x3x8x8,s:")."""
    return ",".join(f"{k}:{'x'.join(str(d) for d in np.shape(v))}" for k, v in inputs.items())


def env_build_args() -> list[str]:
    """$KILN_BUILD_ARGS split: extra `kiln build` arguments for every engine a suite builds (the GPU
    pass sets "--device cuda"); empty when unset."""
    return os.environ.get("KILN_BUILD_ARGS", "").split()


def run_model(model: str | os.PathLike, inputs: dict[str, np.ndarray], workdir: str | os.PathLike, *,
              binary: str | os.PathLike | None = None, timeout: float = 60,
              cwd: str | os.PathLike | None = None, engine: bool = False,
              build_args: list[str] | None = None, in_memory: bool = False) -> tuple[KilnRun, dict[str, np.ndarray] | None]:
    """Writes inputs to WORKDIR/inputs.npz, runs kiln on MODEL, loads WORKDIR/outputs.npz on success.
    With engine=True the model is first built into WORKDIR/model.kiln (a profile fixed at the
    inputs' shapes, plus build_args such as ["--device", "cuda"]), and the engine is what runs.
    With in_memory=True as well, and build_args of just ["--device", D] (and "--host-fallback"), one
    `kiln run --device D` builds the engine in memory and runs it (one process, no file: for suites of many tiny models
    on a GPU, where each process's CUDA start-up dominates)."""
    workdir = Path(workdir)
    in_path, out_path = workdir / "inputs.npz", workdir / "outputs.npz"
    if env_build_args():
        # e.g. KILN_BUILD_ARGS="--device cuda": every model runs as an engine built so, with the
        # caller's own build arguments (the GPU suite)
        build_args = list(build_args or []) + env_build_args()
        engine = True
    extra = []
    if (engine and in_memory and len(build_args or []) >= 2 and build_args[0] == "--device"
            and set(build_args[2:]) <= {"--host-fallback"}):
        engine, extra = False, list(build_args)
    if engine:
        eng = workdir / "model.kiln"
        b = run_kiln(["build", model, "-o", eng, "--shapes", shapes_arg(inputs)] + list(build_args or []),
                     binary=binary, timeout=timeout, cwd=cwd)
        if b.kind != "ok":
            b.message = "build: " + b.message if b.message else "build failed"
            return b, None
        model = eng
    save_npz(in_path, inputs)
    if out_path.exists():
        out_path.unlink()
    r = run_kiln(["run", model, "--inputs", in_path, "--output", out_path] + extra, binary=binary,
                 timeout=timeout, cwd=cwd)
    if r.kind != "ok":
        return r, None
    if not out_path.is_file():
        r.kind, r.message = "error", f"exit 0 but no output file {out_path}"
        return r, None
    try:
        return r, load_npz(out_path)
    except Exception as e:  # a malformed npz from kiln is kiln's failure, not the harness's
        r.kind, r.message = "error", f"exit 0 but {out_path.name} is unreadable by numpy: {e}"
        return r, None


# ---- comparing arrays ----------------------------------------------------------------------------

def cosine(a, b) -> float:
    """Cosine similarity of two arrays as float64 vectors; two all-zero arrays agree (1.0)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / max(na * nb, 1e-300))


def _bf16():
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(onnx.TensorProto.BFLOAT16)


def _fmt_idx(idx) -> str:
    return "(" + ", ".join(str(int(i)) for i in idx) + ")" if len(idx) else "()"


@dataclasses.dataclass
class Comparison:
    ok: bool
    detail: str
    max_abs_err: float | None = None


def compare(got: np.ndarray, exp: np.ndarray, *, rtol: float, atol: float) -> Comparison:
    """Checks got against exp: same dtype and shape; integers and bools exactly; floating point
    elementwise |got - exp| <= atol + rtol*|exp| (np.testing.assert_allclose's rule), NaN exactly
    where exp has NaN, infinities equal. bfloat16 is compared in float32 with rtol at least 2**-6
    (two bf16 ulps), as onnx's backend runner does."""
    got, exp = np.asarray(got), np.asarray(exp)
    if got.dtype != exp.dtype:
        return Comparison(False, f"dtype {got.dtype} != expected {exp.dtype}")
    if got.shape != exp.shape:
        return Comparison(False, f"shape {got.shape} != expected {exp.shape}")
    n = exp.size
    if exp.dtype == _bf16():
        got, exp = got.astype(np.float32), exp.astype(np.float32)
        rtol = max(rtol, 2.0**-6)
    if exp.dtype.kind in "biuSU":
        bad = got != exp
        k = int(np.count_nonzero(bad))
        if k:
            i = np.argwhere(bad)[0]
            return Comparison(False, f"{k}/{n} elements differ (exact compare); first at {_fmt_idx(i)}: "
                                     f"got {got[tuple(i)]!r}, expected {exp[tuple(i)]!r}")
        return Comparison(True, "exact", 0.0)
    if exp.dtype.kind not in "fc":
        return Comparison(False, f"cannot compare dtype {exp.dtype}")
    g = got.astype(np.complex128 if exp.dtype.kind == "c" else np.float64)
    e = exp.astype(g.dtype)
    gn, en = np.isnan(g), np.isnan(e)
    if (gn != en).any():
        k = int(np.count_nonzero(gn != en))
        i = np.argwhere(gn != en)[0]
        return Comparison(False, f"NaN mismatch at {k}/{n} elements; first at {_fmt_idx(i)}: "
                                 f"got {got[tuple(i)]!r}, expected {exp[tuple(i)]!r}")
    gi, ei = np.isinf(g), np.isinf(e)
    inf_bad = (gi | ei) & (g != e)
    if inf_bad.any():
        k = int(np.count_nonzero(inf_bad))
        i = np.argwhere(inf_bad)[0]
        return Comparison(False, f"infinity mismatch at {k}/{n} elements; first at {_fmt_idx(i)}: "
                                 f"got {got[tuple(i)]!r}, expected {exp[tuple(i)]!r}")
    fin = ~(en | ei | gi)
    err = np.where(fin, np.abs(g - e), 0.0)
    max_err = float(err.max()) if n else 0.0
    bad = err > atol + rtol * np.abs(e)
    if bad.any():
        k = int(np.count_nonzero(bad))
        i = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), err.shape)
        return Comparison(False, f"max abs err {max_err:.3g} at {_fmt_idx(i)}: got {got[i]!r}, expected "
                                 f"{exp[i]!r}; {k}/{n} elements outside rtol={rtol:g} atol={atol:g}",
                          max_err)
    return Comparison(True, f"max abs err {max_err:.3g}", max_err)
