"""The repository passes its own lint configuration (`[tool.ruff]` in pyproject.toml: pyflakes,
pycodestyle, and the codes the source's `noqa` comments name)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    proc = subprocess.run([ruff, "check", ".", "--output-format", "concise"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_the_library_imports_nothing_from_the_grader_or_the_instructor_tools():
    import ast

    for path in sorted((ROOT / "course_utils").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                assert name.split(".")[0] not in ("autograder", "instructor", "course", "benchmarks"), \
                    f"{path.name} imports {name}"


def test_importing_the_library_is_light():
    code = "import sys, course_utils, course_utils.policy; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
