"""Argument types the benchmark scripts share: a bad value is a usage error before anything runs."""
from __future__ import annotations

import argparse
from pathlib import Path


def positive(text: str) -> int:
    """A count of at least 1 (epochs, steps, workers, threads, students)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def out_file(text: str) -> str:
    """Where a benchmark writes its JSON: a file, not an existing folder (checked before the benchmark runs)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the JSON file's path, e.g. {Path(text) / 'x.json'}")
    return text
