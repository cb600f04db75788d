"""course_utils: the library of the "MNIST 99.4% under 10k parameters" course.

Written once here, called by every notebook and grader: MNIST provisioning and the in-memory
pipeline, the training engine with run records, model inspection and plots.

``import course_utils`` is light: it loads no torch and no matplotlib. Each name below is imported from
its module on first use (``course_utils.fit`` loads the engine, and torch with it), so the CLI and
modules such as ``course_utils.policy`` start fast.
"""
from .threads import set_wait_policy

set_wait_policy()  # before anything imports torch: OpenMP reads it once, when torch loads (course_utils.threads)

#: public name -> the module that defines it
_EXPORTS = {
    "TrainConfig": "config",
    **dict.fromkeys(("MNIST_MEAN", "MNIST_STD", "ensure_mnist", "load_uint8", "torchvision_datasets"), "data"),
    **dict.fromkeys(("EvalResult", "RunResult", "evaluate", "find_records", "fit", "load_record"), "engine"),
    **dict.fromkeys(("count_parameters", "describe", "find_fc_layers", "parameter_table", "receptive_field"),
                    "inspection"),
    **dict.fromkeys(("TensorLoader", "mnist_data", "random_affine"), "loader"),
    "seed_everything": "seed",
    **dict.fromkeys(("plot_curves", "plot_misclassified", "plot_confusion", "confusion_matrix"), "plots"),
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'course_utils' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = list(_EXPORTS)
