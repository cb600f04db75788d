"""Where benchmark scripts write their JSON: the measured payload plus the machine it ran on."""
from __future__ import annotations

import json
import platform
from pathlib import Path


def write_results(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` with ``machine``/``processor``/``python`` added, and say where."""
    out = {**payload, "machine": platform.machine(),
           "processor": platform.processor() or platform.uname().processor, "python": platform.python_version()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}")
    return path
