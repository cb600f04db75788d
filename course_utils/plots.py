"""Figures people would rather look at than read: learning curves, misclassified digits, confusion.

Each function saves a PNG when given ``path`` and returns the matplotlib ``Figure`` (which a
notebook displays). Curves accept run histories, ``RunResult`` objects or run-record folders.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from .policy import TARGET_ACCURACY
from .engine import EvalResult, RunResult, evaluate, load_record


def _pyplot():
    """matplotlib.pyplot, imported at the first figure: the grader's worker imports this module with a
    notebook's setup cell and never draws, so it does not pay for matplotlib."""
    import matplotlib.pyplot as plt

    return plt


def _history(run) -> list[dict]:
    if isinstance(run, RunResult):
        return run.history
    if isinstance(run, (str, os.PathLike)):
        return load_record(run).history
    if hasattr(run, "history"):
        return run.history
    return list(run)


def _save(fig, path):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_curves(runs, path=None, *, title: str | None = None, metrics=("accuracy", "loss"),
                target: float | None = TARGET_ACCURACY, splits=("train", "test")):
    """Accuracy and loss per epoch for one run or several (a mapping ``label -> run``) on one figure.

    ``splits=("test",)`` draws validation curves only (the Session 3 comparison figure).
    """
    if not isinstance(runs, Mapping):
        runs = {"run": runs}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shared = len(runs) > 2   # one legend under the panels: inside them it would hide the curves
    for ax, metric in zip(axes[0], metrics):
        for i, (label, run) in enumerate(runs.items()):
            h = _history(run)
            epochs = [r["epoch"] for r in h]
            for split in splits:
                style = "-" if split == "test" else "--"
                # shared legend: a run's colour once (its test line); the line styles are explained apart
                name = label if len(splits) == 1 or shared else f"{label} {split}"
                ax.plot(epochs, [r[f"{split}_{metric}"] for r in h], style, color=colors[i % len(colors)],
                        marker="o" if split == "test" else None, markersize=3,
                        label=name if split == splits[-1] or not shared else "_" + name)
        if metric == "accuracy" and target is not None:
            ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"{target}% target")
            lows = [r["test_accuracy"] for run in runs.values() for r in _history(run)][1:]
            if lows:
                ax.set_ylim(max(min(lows) - 0.3, 90), 100)
        values = [y for line in ax.get_lines() for y in line.get_ydata() if y > 0]
        log = metric == "loss" and values and max(values) > 5 * min(values)   # a narrow range reads better linear
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)   # epochs are whole numbers
        ax.set_ylabel(f"{metric} (%)" if metric == "accuracy" else f"{metric} (log scale)" if log else metric)
        ax.set_title(f"{'/'.join(splits)} {metric}")
        ax.grid(alpha=0.3)
        if not shared:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if shared:
        from matplotlib.lines import Line2D

        handles, labels = axes[0][0].get_legend_handles_labels()
        if len(splits) > 1:
            handles += [Line2D([], [], color="black", ls="--"), Line2D([], [], color="black", ls="-", marker="o",
                                                                       markersize=3)]
            labels += ["train (dashed)", "test (solid)"]
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_misclassified(model, data, path=None, *, n: int = 25, cols: int = 5, title: str | None = None,
                       result: EvalResult | None = None):
    """A grid of up to ``n`` test images the model gets wrong, titled "Actual: x, Prediction: y"."""
    result = result or evaluate(model, data)
    images = data.test_images if hasattr(data, "test_images") else data.images
    wrong = result.wrong_indices[:n]
    rows = max(1, -(-len(wrong) // cols))
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(images[i].squeeze().cpu().numpy(), cmap="gray_r")
        ax.set_title(f"Actual: {int(result.targets[i])}, Prediction: {int(result.predictions[i])}", fontsize=8)
    fig.suptitle(title or f"{len(result.wrong_indices)} misclassified of {len(result.targets)} "
                 f"(test accuracy {result.accuracy:.2f}%), first {len(wrong)} shown", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """``cm[true, predicted]`` counts."""
    idx = targets.long() * num_classes + predictions.long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion(result: EvalResult, path=None, *, title: str | None = None):
    """The confusion matrix of an evaluation, counts written in the off-diagonal (error) cells."""
    cm = confusion_matrix(result.predictions, result.targets)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    off = cm.clone().float()
    off.fill_diagonal_(0)
    im = ax.imshow(off.numpy(), cmap="Reds")
    fig.colorbar(im, ax=ax, label="errors")
    for t in range(10):
        for p in range(10):
            v = int(cm[t, p])
            if v:
                ax.text(p, t, str(v), ha="center", va="center", fontsize=7,
                        color="black" if t != p else "tab:green")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title or f"Confusion matrix (accuracy {result.accuracy:.2f}%, diagonal in green)")
    fig.tight_layout()
    return _save(fig, path)
