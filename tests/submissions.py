"""Building submission notebooks for grader tests: the released student notebook with the
solution filled in (a "completed" submission), then edited into each broken case we test."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def completed(assignment: str) -> dict:
    """``sessions/<assignment>.ipynb`` with every solution cell replaced by the solution's code
    (markers removed): what a student who did everything right hands in."""
    student, solution = load(ROOT / "sessions" / f"{assignment}.ipynb"), load(ROOT / "solutions" / f"{assignment}.ipynb")
    answers = {c["metadata"]["nbgrader"]["grade_id"]: _src(c) for c in solution["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    for cell in student["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in answers and cell["metadata"]["nbgrader"].get("solution"):
            cell["source"] = "\n".join(ln for ln in answers[gid].splitlines() if not MARKER.match(ln))
    return student


def stub(assignment: str) -> dict:
    return load(ROOT / "sessions" / f"{assignment}.ipynb")


def edit(nb: dict, where: str, old: str | None = None, new: str = "") -> dict:
    """A copy of ``nb`` with the cell whose grade_id or tag is ``where`` changed: ``old`` replaced by
    ``new`` (which must occur), or the whole source replaced when ``old`` is None."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        meta = cell["metadata"]
        if meta.get("nbgrader", {}).get("grade_id") == where or where in meta.get("tags", []):
            src = _src(cell)
            if old is None:
                cell["source"] = new
            else:
                assert old in src, f"{old!r} not in cell {where}"
                cell["source"] = src.replace(old, new)
            return nb
    raise KeyError(where)


def write(nb: dict, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(nb, indent=1))
    return path


def copy_records(runs_dir: Path, dest: Path, names=None) -> Path:
    """Copy the run records (optionally only some config names) into ``dest`` (a runs/ folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in sorted(Path(runs_dir).iterdir()):
        cfg = json.loads((d / "config.json").read_text())
        if names is None or cfg["name"] in names:
            shutil.copytree(d, dest / d.name)
    return dest


# A small valid network (the tests only need its structure, not its accuracy): 792 parameters.
SMALL = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, bias=False)
        self.c2 = nn.Conv2d(8, 10, 3, bias=False)
{init}
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)          # 13x13
{forward}
        return F.log_softmax(F.adaptive_avg_pool2d(x, 1).flatten(1), dim=1)
'''


def net(init: str = "", forward: str = "        x = self.c2(x)", before: str = "", after: str = "") -> str:
    return before + SMALL.format(init=init or "        pass", forward=forward) + after
