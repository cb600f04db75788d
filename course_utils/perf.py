"""Process-level settings that make small-CNN training faster on a CPU.

``tune_allocator()`` asks glibc's malloc to keep 256 MB of padding at the top of its heap instead of
handing freed memory back to the operating system after every step. A training step allocates and
frees activation tensors of a few MB each; without the padding, each step maps fresh pages and pays
a page fault per 4 KB, which is expensive in virtual machines (measured gain: RESULTS.md). The cost
is that the process keeps up to that much memory reserved. No effect (and no error) where glibc is
not the C library.
``COURSE_TUNE_ALLOCATOR=0`` in the environment turns it off (the benchmark's seed-style baseline
runs without it, as the documents' code would).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TOP_PAD = -2
TOP_PAD_BYTES = 256 << 20
_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the malloc setting once per process; returns whether it is in effect."""
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux") and os.environ.get("COURSE_TUNE_ALLOCATOR", "1") != "0":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _done = bool(libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES))
            except (OSError, AttributeError):
                _done = False
    return _done
