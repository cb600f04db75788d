"""Parameter frontier: how small can a course-style network be and still reach 99.4% on every seed?

    python -m benchmarks.frontier --seeds 1 2 3 4 5 6 7 8 9 10      (make frontier)
    python -m benchmarks.frontier --candidates w4692,w4884 --seeds 1 2 3 --workers 2   (screening)

Two families, each trained with its reference's recipe unchanged and judged by the grading policy
(>= 99.4% in each of the last 3 epochs, on every seed):

* ``w<parameters>``: iteration 4's layout (``Session2Net``) with other widths: 3x3 conv blocks (Conv -> ReLU
  -> BatchNorm -> Dropout2d, no bias) before one max-pool, 3x3 conv blocks after it, global average
  pooling and a 1x1 conv to 10 classes, trained with ``SESSION2_CONFIG`` (14 epochs, OneCycle, batch 128,
  7 degree rotation);
* ``p<parameters>``: iteration 5's earlier layout (``PooledNet``: iteration 4's six convs pooled after the first) with
  other widths, trained with the fast recipe ``SPEED_CONFIG``;
* ``s<parameters>``: iteration 5's earlier space-to-depth layout (``SpaceToDepthNet``) with other widths,
  trained with the fast recipe ``SPEED_CONFIG`` (14 epochs, a third of iteration 4's compute per image).

No fully connected layer in either. Run records go to ``runs/`` like the seed sweep's (an interrupted run
resumes).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
import torch.nn.functional as F

from course_utils.policy import POLICIES
from instructor.reference.session2 import SESSION2_CONFIG, SPEED_CONFIG, PooledNet, SpaceToDepthNet, conv_block
from course_utils.inspection import count_parameters
from benchmarks.seeds import matching_records, run_jobs, summary, train_one
from benchmarks.args import positive

ROOT = Path(__file__).resolve().parents[1]

class WidthNet(nn.Module):
    """``Session2Net``'s layout with the given widths: ``WidthNet((8, 12, 16), (16, 16, 16))`` is the
    Session 2 reference (9,904 parameters)."""

    def __init__(self, before_pool: tuple[int, ...], after_pool: tuple[int, ...], dropout: float = 0.05):
        super().__init__()
        layers, c = [], 1
        for i, w in enumerate((*before_pool, *after_pool)):
            if i == len(before_pool):
                layers.append(nn.MaxPool2d(2))
            layers.append(conv_block(c, w, dropout=dropout))
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, 10, 1, bias=False))

    def forward(self, x):
        return F.log_softmax(self.features(x).flatten(1), dim=1)


@dataclass(frozen=True)
class Candidate:
    """Iteration 4's layout with these widths, trained with its recipe."""

    before_pool: tuple[int, ...]
    after_pool: tuple[int, ...]
    dropout: float = 0.05
    recipe = SESSION2_CONFIG

    def build(self) -> WidthNet:
        return WidthNet(self.before_pool, self.after_pool, self.dropout)

    @property
    def layout(self) -> str:
        return "-".join(map(str, self.before_pool)) + " | pool | " + "-".join(map(str, self.after_pool))


@dataclass(frozen=True)
class PooledCandidate:
    """Iteration 5's earlier layout (``PooledNet``: six convs, a max-pool after the first and the third) with these
    widths, trained with its recipe."""

    widths: tuple[int, ...]
    recipe = SPEED_CONFIG

    def build(self) -> PooledNet:
        return PooledNet(self.widths)

    @property
    def layout(self) -> str:
        w = self.widths
        return f"{w[0]} | pool | {w[1]}-{w[2]} | pool | " + "-".join(map(str, w[3:]))


@dataclass(frozen=True)
class SpeedCandidate:
    """The space-to-depth layout with these widths, trained with iteration 5's recipe."""

    widths: tuple[int, ...]
    recipe = SPEED_CONFIG

    def build(self) -> SpaceToDepthNet:
        return SpaceToDepthNet(self.widths)

    @property
    def layout(self) -> str:
        return "s2d | " + "-".join(map(str, self.widths))


#: name -> candidate: w<parameters>, d0 for no dropout; the name is the config name's suffix, so records of
#: different candidates never mix
CANDIDATES = {
    "w4692": Candidate((8, 10, 12), (12, 12)),
    "w4884": Candidate((8, 8, 10), (10, 12, 12)),
    "w4884d0": Candidate((8, 8, 10), (10, 12, 12), dropout=0.0),
    "w6012": Candidate((8, 10, 12), (12, 12, 12)),
    "w7632": Candidate((8, 10, 14), (14, 14, 14)),
    "w8032": Candidate((8, 12, 14), (14, 14, 14)),
    "p4884": PooledCandidate((8, 8, 10, 10, 12, 12)),
    "p6012": PooledCandidate((8, 10, 12, 12, 12, 12)),
    "p7632": PooledCandidate((8, 10, 14, 14, 14, 14)),
    "s4764": SpeedCandidate((10, 10, 10, 12, 12)),
    "s4924": SpeedCandidate((10, 10, 12, 12, 10)),
    "s5856": SpeedCandidate((12, 12, 12, 12, 12)),
    "s7564": SpeedCandidate((14, 14, 14, 14, 12)),
}


def config_for(name: str):
    """The candidate's recipe under its own config name."""
    return CANDIDATES[name].recipe.replace(name=f"frontier-{name}")


def _train(job) -> tuple[str, bool]:
    name, seed, runs_dir = job
    return train_one(name, CANDIDATES[name].build, config_for(name).replace(seed=seed), runs_dir,
                     POLICIES["session2"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help=f"comma-separated, from {list(CANDIDATES)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    ap.add_argument("--runs-dir", default=str(ROOT / "runs"))
    ap.add_argument("--workers", type=positive, default=2, help="parallel training processes, one torch thread each")
    ap.add_argument("--no-train", action="store_true", help="only print the table of existing records")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    params = {n: count_parameters(CANDIDATES[n].build()) for n in names}

    def records(name):
        return matching_records(config_for(name), params[name], args.runs_dir)

    done = {n: {r.config.seed for r in records(n)} for n in names}
    jobs = [(n, s, args.runs_dir) for s in ([] if args.no_train else args.seeds) for n in names if s not in done[n]]
    run_jobs(_train, jobs, args.workers)

    policy = POLICIES["session2"]
    print(f"\n{'candidate':<8} {'layout':<26} {'params':>6} {'seeds':>5} {'final min':>9} {'mean':>6} {'max':>6} "
          f"{'last-3 min':>10} {'pass':>5}  first epoch >= 99.4")
    passing = []
    for n in sorted(names, key=params.get):
        recs = [r for r in records(n) if r.config.seed in args.seeds]
        if not recs:
            continue
        s = summary(recs, policy)
        if s["passing"] == s["n"] == len(args.seeds):
            passing.append(n)
        print(f"{n:<8} {CANDIDATES[n].layout:<26} {params[n]:>6,} {s['n']:>5} {s['final_min']:>9.2f} "
              f"{s['final_mean']:>6.2f} {s['final_max']:>6.2f} {s['last3_min']:>10.2f} {s['passing']:>2}/{s['n']:<2}  "
              f"{s['first_epochs']}")
    if passing:
        best = min(passing, key=params.get)
        print(f"\nsmallest passing every seed ({len(args.seeds)} seeds, >= {policy.min_accuracy}% in each of the last "
              f"{policy.consistent_epochs} of {config_for(best).epochs} epochs): {best}, {params[best]:,} parameters")
    else:
        print(f"\nno candidate passed all {len(args.seeds)} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
