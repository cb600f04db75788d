"""Shared fixtures: the real MNIST (provisioned once per session) and a scratch runs directory."""
from __future__ import annotations

import pytest
import torch

from course_utils.data import ensure_mnist, load_uint8

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mnist_root():
    """The verified data root (``$COURSE_DATA`` or ./data); provisions MNIST if it is not there."""
    return ensure_mnist(verbose=False)


@pytest.fixture(scope="session")
def mnist_tensors(mnist_root):
    return load_uint8(mnist_root)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("COURSE_RUNS", str(d))
    return d
