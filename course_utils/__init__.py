"""course_utils: the library of the "MNIST 99.4% under 10k parameters" course.

Written once here, called by every notebook and grader: MNIST provisioning and the in-memory
pipeline, the training engine with run records, model inspection and plots.
"""
from .config import TrainConfig
from .data import MNIST_MEAN, MNIST_STD, ensure_mnist, load_uint8, torchvision_datasets
from .engine import EvalResult, RunResult, evaluate, find_records, fit, load_record
from .inspection import count_parameters, describe, find_fc_layers, parameter_table, receptive_field
from .loader import TensorLoader, mnist_data, random_affine
from .seed import seed_everything


def __getattr__(name):
    # plots import matplotlib: loaded on first use, so graders and the CLI start fast
    if name in ("plot_curves", "plot_misclassified", "plot_confusion", "confusion_matrix"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


__all__ = ["TrainConfig", "MNIST_MEAN", "MNIST_STD", "ensure_mnist", "load_uint8", "torchvision_datasets",
           "EvalResult", "RunResult", "evaluate", "find_records", "fit", "load_record", "count_parameters",
           "describe", "find_fc_layers", "parameter_table", "receptive_field", "TensorLoader", "mnist_data",
           "random_affine", "seed_everything", "plot_curves", "plot_misclassified", "plot_confusion",
           "confusion_matrix"]
