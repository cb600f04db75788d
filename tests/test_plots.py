"""Plots write PNG files and show the right numbers."""
from __future__ import annotations

import pytest
import torch

from course_utils.engine import EvalResult
from course_utils.loader import TensorLoader
from course_utils.plots import confusion_matrix, plot_confusion, plot_curves, plot_misclassified


def _history(shift=0.0):
    return [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.1 / e, "train_accuracy": 95 + e / 2 + shift,
             "test_accuracy": 96 + e / 3 + shift} for e in range(1, 6)]


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_curves_for_several_runs_on_one_figure(tmp_path):
    fig = plot_curves({"L1+BN": _history(), "GBN": _history(0.2)}, tmp_path / "curves.png", splits=("test",))
    assert _is_png(tmp_path / "curves.png")
    acc_ax = fig.axes[0]
    labels = [line.get_label() for line in acc_ax.get_lines()]
    assert labels[:2] == ["L1+BN", "GBN"]
    assert list(acc_ax.get_lines()[1].get_ydata()) == [h["test_accuracy"] for h in _history(0.2)]


def test_many_runs_share_one_legend_under_the_panels_and_a_narrow_loss_range_is_linear(tmp_path):
    """Five runs' legend inside a panel hid the curves (the Session 2 report's figure): with more than two
    runs it goes under the panels, one entry per run plus the two line styles."""
    runs = {f"run {i}": [{**h, "train_loss": 0.5 - 0.01 * h["epoch"], "test_loss": 0.12 + 0.001 * i}
                         for h in _history(0.05 * i)] for i in range(5)}
    fig = plot_curves(runs, tmp_path / "five.png")
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [f"run {i}" for i in range(5)] + ["99.4% target", "train (dashed)", "test (solid)"]
    assert fig.axes[1].get_yscale() == "linear"   # these losses span less than a factor of 5
    two = plot_curves({"a": _history(), "b": _history(0.2)}, tmp_path / "two.png")
    assert not two.legends and all(ax.get_legend() is not None for ax in two.axes)
    assert two.axes[1].get_yscale() == "log"   # 1.1 down to 0.2: more than a factor of 5


def test_confusion_matrix_counts():
    preds, targets = torch.tensor([1, 1, 2, 3, 3]), torch.tensor([1, 2, 2, 3, 1])
    cm = confusion_matrix(preds, targets)
    assert cm.sum() == 5 and cm[1, 1] == 1 and cm[2, 1] == 1 and cm[1, 3] == 1 and cm.trace() == 3


def test_confusion_and_misclassified_grid_files(tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8, generator=gen)
    targets = torch.randint(0, 10, (40,), generator=gen)
    preds = targets.clone()
    preds[::4] = (preds[::4] + 1) % 10
    result = EvalResult(100 * (preds == targets).float().mean().item(), 0.1, preds, targets)
    plot_confusion(result, tmp_path / "cm.png")
    loader = TensorLoader(images, targets, 10)
    fig = plot_misclassified(None, loader, tmp_path / "wrong.png", result=result, n=25)
    assert _is_png(tmp_path / "cm.png") and _is_png(tmp_path / "wrong.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 10
    assert titles[0] == f"Actual: {int(targets[0])}, Prediction: {int(preds[0])}"


@pytest.mark.slow
def test_misclassified_grid_from_a_real_model(mnist_tensors, tmp_path):
    from course_utils.loader import mnist_data
    from instructor.reference.session2 import Session2Net

    data = mnist_data(128, tensors=mnist_tensors)
    fig = plot_misclassified(Session2Net(), data, tmp_path / "g.png")  # untrained: plenty of mistakes
    assert _is_png(tmp_path / "g.png") and sum(1 for ax in fig.axes if ax.get_title()) == 25
