"""Render the session reports from run records: ``sessions/session2/README.md``, ``sessions/session3/README.md``.

    python -m instructor.report [--runs-dir runs] [--session session3]        (make report)

Every number comes from a run record under ``runs/`` (written by ``make reproduce`` and
``make seeds``); the Target and Analysis text of each Session 2 iteration is read from its solution
notebook, so the lesson and the report cannot drift apart. Figures are small PNGs beside each README.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from course_utils.policy import POLICIES
from instructor.reference.session2 import SESSION2_CONFIG, SPEED_CONFIG
from course_utils.records import select
from course_utils.policy import TARGET_ACCURACY
from course_utils.notebook import results_rows

ROOT = Path(__file__).resolve().parents[1]

ITERATIONS = [
    ("1_skeleton", "s2-1-skeleton", "Basic skeleton"),
    ("2_lighter", "s2-2-lighter", "Lighter model"),
    ("3_gap", "s2-3-gap", "Global average pooling"),
    ("4_bn_dropout", "s2-4-bn-dropout", "Batch norm + 5% dropout (graded)"),
    ("5_speed", "s2-5-speed", "Speed: a stride-2 first conv (beyond the documents)"),
]

#: iterations swept over seeds by ``make seeds``: their reports show every seed trained with exactly this config
SWEPT_CONFIGS = {c.name: c for c in (SESSION2_CONFIG, SPEED_CONFIG)}

#: The course documents' own Session 3 results (max / final test accuracy), as published there (GPU,
#: batch 128, SGD 0.01, no schedule, no augmentation, 25 epochs); quoted, not measured here.
DOCUMENTS_SESSION3 = {"L1+BN": (99.34, 99.17), "L2+BN": (99.44, 99.39), "L1+L2+BN": (99.30, 99.30),
                      "GBN": (99.40, 99.27), "L1+L2+GBN": (99.28, 99.21)}


def _cell_text(nb_path: Path, marker: str) -> str:
    """The text after ``marker`` (e.g. "**Target.**") in the first markdown cell that has it."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and marker in src:
            text = src.split(marker, 1)[1].strip()
            return " ".join(text.split("\n\n")[0].split())
    return ""


def latest_by_seed(config, runs_dir) -> list:
    """Newest complete record per seed of ``config``: a ``TrainConfig`` (records trained with exactly it,
    any seed; runs that explored another recipe under the same name do not count) or a config name
    (any record of that name; quick smoke runs have another name)."""
    return select(config, runs_dir, per_seed=True)


def _stats(values):
    return min(values), statistics.mean(values), max(values)


def _fmt3(values):
    lo, mean, hi = _stats(values)
    return f"{mean:.2f}% ({lo:.2f}-{hi:.2f})"


def _fmt_epochs(values):
    lo, mean, hi = _stats(values)
    return f"{mean:.1f} ({lo}-{hi})"


def seeds_table(records) -> list[str]:
    """One row per seed plus a mean (min-max) row."""
    rows = ["| seed | parameters | best train | best test (epoch) | final test | last 3 epochs "
            f"| first epoch >= {TARGET_ACCURACY}% |",
            "|---|---|---|---|---|---|---|"]
    for r in records:
        m = r.metrics
        last3 = ", ".join(f"{h['test_accuracy']:.2f}" for h in r.history[-3:])
        rows.append(f"| {m['seed']} | {m['parameters']:,} | {m['best_train_accuracy']:.2f}% | "
                    f"{m['best_test_accuracy']:.2f}% ({m['best_epoch']}) | {m['final_test_accuracy']:.2f}% | {last3} | "
                    f"{m['first_epoch_at_target'] or 'never'} |")
    if len(records) > 1:
        ms = [r.metrics for r in records]
        firsts = [m["first_epoch_at_target"] for m in ms if m["first_epoch_at_target"]]
        rows.append(f"| **mean (min-max)** | {ms[0]['parameters']:,} | {_fmt3([m['best_train_accuracy'] for m in ms])} | "
                    f"{_fmt3([m['best_test_accuracy'] for m in ms])} | {_fmt3([m['final_test_accuracy'] for m in ms])} | "
                    f"min {min(min(h['test_accuracy'] for h in r.history[-3:]) for r in records):.2f} | "
                    + (f"{_fmt_epochs(firsts)}" if len(firsts) == len(ms) else f"{len(firsts)}/{len(ms)} reached")
                    + " |")
    return rows


def _mean_history(records) -> list[dict]:
    n = min(len(r.history) for r in records)
    keys = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")
    return [{"epoch": i + 1, **{k: statistics.mean(r.history[i][k] for r in records) for k in keys}} for i in range(n)]


def session2(runs_dir, out_dir: Path) -> str:
    from course_utils.plots import plot_curves

    nb_dir = ROOT / "solutions" / "session2"
    lines = ["# Session 2: toward 99.4% with fewer than 10,000 parameters", "",
             "Rendered by `make report` from the run records in `runs/` (written by `make reproduce` and "
             "`make seeds`); do not edit by hand. Target and Analysis come from the solution notebooks in "
             "`solutions/session2/`, every number from a run record. Training times are the records' wall "
             "times: they depend on the machine and on what else ran on it (`make bench` measures speed on "
             "its own).", ""]
    curves, shown = {}, []
    for i, (stem, name, title) in enumerate(ITERATIONS, 1):
        nb = nb_dir / f"{stem}.ipynb"
        lines += [f"## Iteration {i}: {title}", "", f"**Target.** {_cell_text(nb, '**Target.**')}", "", "**Results.**", ""]
        swept = SWEPT_CONFIGS.get(name)
        records = latest_by_seed(swept or name, runs_dir)
        if not records:
            lines += [f"No run record named `{name}` yet: run `make reproduce`.", ""]
        elif swept is None:
            rec = records[0] if len(records) == 1 else next((r for r in records if r.config.seed == 1), records[0])
            lines += ["| result | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in results_rows(rec.metrics)] + [""]
            curves[f"{i}. {title}"] = rec.history
            shown.append(rec)
        else:
            lines += [f"Over {len(records)} seeds (each row a full run of the notebook's config):", ""]
            lines += seeds_table(records) + [""]
            curves[f"{i}. {title} (mean of {len(records)} seeds)"] = _mean_history(records)
            shown += records
        lines += [f"**Analysis.** {_cell_text(nb, '**Analysis.**')}", ""]
    if curves:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_curves(curves, out_dir / "figures" / "iterations.png", title="Session 2 iterations")
        lines += ["## Curves", "",
                  "![train (dashed) and test accuracy and loss of each iteration](figures/iterations.png)", ""]
        smoothed = sorted({r.config.label_smoothing for r in shown if r.config.label_smoothing})
        if smoothed:
            lines += [f"Train loss is the loss each run trained on: with label smoothing ({', '.join(map(str, smoothed))}) "
                      "it cannot fall near zero. Test loss is plain cross-entropy for every run; a smoothed network is "
                      "less confident, so its test loss stays higher at the same accuracy.", ""]
    return "\n".join(lines)


def session3(runs_dir, out_dir: Path) -> str:
    from instructor.reference import session3 as ref
    from course_utils.loader import mnist_data
    from course_utils.plots import plot_curves, plot_misclassified

    lines = ["# Session 3: regularisation under a 10k-parameter budget", "",
             "Rendered by `make report` from the run records in `runs/` (written by `make seeds`, the same "
             "configurations as `solutions/session3/regularization.ipynb`); do not edit by hand.", "",
             f"Recipe shared by all five variants: {ref.BASE.epochs} epochs, batch {ref.BASE.batch_size}, SGD with "
             f"Nesterov momentum, OneCycle up to {ref.BASE.lr}, ±{ref.BASE.rotation:g}° rotations and shifts of up to "
             f"±{ref.BASE.translate * 28:g} pixels"
             + (f", label smoothing {ref.BASE.label_smoothing:g}" if ref.BASE.label_smoothing else "")
             + (f", tested and graded on a moving average of the weights (decay {ref.BASE.ema_decay:g}"
                + (", warmed up" if ref.BASE.ema_warmup else "") + ")" if ref.BASE.ema_decay else "") + "; L1 = "
             f"{ref.L1_WEIGHT:g} x sum |w| over conv weights, L2 = SGD weight decay {ref.WEIGHT_DECAY:g}, "
             f"GBN = {ref.GBN_SPLITS} virtual batches of {ref.BASE.batch_size // ref.GBN_SPLITS}.", ""]
    found = {label: latest_by_seed(cfg, runs_dir) for label, (_, _, cfg) in ref.VARIANTS.items()}
    found = {k: v for k, v in found.items() if v}
    if not found:
        return "\n".join(lines + ["No run records yet: run `make seeds`.", ""])

    lines += ["## Results", "", "Mean over seeds, (min-max) in brackets; \"last 3\" is the lowest test accuracy in "
              "the last three epochs of any seed (the grading rule needs >= 99.4% there).", "",
              f"| variant | parameters | seeds | best test | final test | last 3 (min) | first epoch >= {TARGET_ACCURACY}% "
              "| passing seeds |",
              "|---|---|---|---|---|---|---|---|"]
    summary, policy = {}, POLICIES["session3"]
    for label, recs in found.items():
        ms = [r.metrics for r in recs]
        firsts = [m["first_epoch_at_target"] for m in ms if m["first_epoch_at_target"]]
        last3 = min(policy.lowest_of_last(r.history) for r in recs)
        passing = sum(policy.record_passes(r) for r in recs)
        summary[label] = dict(final=statistics.mean(m["final_test_accuracy"] for m in ms),
                              best=statistics.mean(m["best_test_accuracy"] for m in ms), last3=last3,
                              first=statistics.mean(firsts) if firsts else float("inf"),
                              loss=statistics.mean(r.history[-1]["test_loss"] for r in recs),
                              train=statistics.mean(r.history[-1]["train_accuracy"] for r in recs), n=len(recs),
                              spread=max(m["final_test_accuracy"] for m in ms) - min(m["final_test_accuracy"] for m in ms))
        lines.append(f"| {label} | {ms[0]['parameters']:,} | {len(recs)} | {_fmt3([m['best_test_accuracy'] for m in ms])} | "
                     f"{_fmt3([m['final_test_accuracy'] for m in ms])} | {last3:.2f}% | "
                     f"{_fmt_epochs(firsts) if len(firsts) == len(ms) else f'{len(firsts)}/{len(ms)} reached'} | "
                     f"{passing}/{len(recs)} |")
    lines.append("")

    figs = out_dir / "figures"
    mean_h = {label: _mean_history(recs) for label, recs in found.items()}
    n = min(len(r) for r in found.values())
    plot_curves(mean_h, figs / "val_accuracy.png", metrics=("accuracy",), splits=("test",),
                title=f"Validation accuracy (mean of {n}+ seeds)")
    plot_curves(mean_h, figs / "val_loss.png", metrics=("loss",), splits=("test",),
                title=f"Validation loss (mean of {n}+ seeds)")
    lines += ["## Validation curves", "", "![validation accuracy](figures/val_accuracy.png)", "",
              "![validation loss](figures/val_loss.png)", ""]

    best = max(summary, key=lambda k: (summary[k]["final"], summary[k]["last3"]))
    data = mnist_data(1000)
    for old in figs.glob("misclassified_*.png"):  # the best variant may have changed since the last report
        old.unlink()
    lines += ["## Misclassified test images", ""]
    for label in dict.fromkeys(("GBN", best)):
        if label not in found:
            continue
        rec = found[label][0]
        factory, _, _ = ref.variant(label)
        model = factory()
        model.load_state_dict(rec.load_state_dict())
        fname = "misclassified_" + label.lower().replace("+", "_") + ".png"
        plot_misclassified(model, data, figs / fname, title=f"{label} (seed {rec.config.seed}): misclassified test images")
        lines += [f"**{label}**" + (" (best final accuracy)" if label == best else "") + f", seed {rec.config.seed}:", "",
                  f"![{label} misclassified]({'figures/' + fname})", ""]

    lines += ["## Findings", "", *findings(summary), ""]
    lines += ["## Beside the course documents' recipe", "",
              "The documents trained their own 9,920-parameter network with SGD 0.01, no schedule, no "
              "augmentation, L1 1e-4 over all parameters, weight decay 1e-5 and 25 epochs. Their published "
              "results (max / final test accuracy; quoted from the documents, not re-measured here) next to ours "
              "(mean over seeds):", "",
              "| variant | documents max / final | ours best / final (mean) |", "|---|---|---|"]
    for label, (mx, fin) in DOCUMENTS_SESSION3.items():
        ours = summary.get(label)
        lines.append(f"| {label} | {mx:.2f}% / {fin:.2f}% | " +
                     (f"{ours['best']:.2f}% / {ours['final']:.2f}%" if ours else "not run") + " |")
    lines += ["", "The documents' \"99.46% (GBN)\" was their L2+GBN run, which is not one of the five variants "
              "graded here.", ""]
    return "\n".join(lines)


def findings(s: dict) -> list[str]:
    """Comparative sentences computed from the summary numbers (so they change when the numbers do)."""
    order = sorted(s, key=lambda k: -s[k]["final"])
    between = s[order[0]]["final"] - s[order[-1]]["final"]
    within = statistics.mean(s[k]["spread"] for k in s)
    if min(s[k]["n"] for k in s) < 2:
        verdict = ("not evidence either way: with one seed per variant there is no seed-to-seed spread to compare with"
                   if max(s[k]["n"] for k in s) < 2 else
                   "not evidence either way: some variants have only one seed so far (see the seeds column), "
                   "so their seed-to-seed spread is unknown")
    else:
        verdict = None
    verdict = verdict or ("smaller than the average seed-to-seed spread of one variant "
               f"({within:.2f} points), so these runs do not separate the regularisers; the shared recipe "
               "(schedule, augmentation) is what puts all of them above the documents' numbers"
               if between <= within else
               f"larger than the average seed-to-seed spread of one variant ({within:.2f} points)")
    out = [f"- **Final accuracy**: {order[0]} ended highest ({s[order[0]]['final']:.2f}% mean), {order[-1]} lowest "
           f"({s[order[-1]]['final']:.2f}%). The gap, {between:.2f} points, is {verdict}."]
    ok = [k for k in s if s[k]["last3"] >= TARGET_ACCURACY]
    out.append(f"- **Consistency**: {len(ok)} of {len(s)} variants stayed at or above {TARGET_ACCURACY}% in each of the "
               "last three epochs of every seed" + ("" if len(ok) == len(s) else
                                                    f" (not: {', '.join(k for k in s if k not in ok)})") + ".")
    fast = min(s, key=lambda k: s[k]["first"])
    slow = max(s, key=lambda k: s[k]["first"])
    out.append(f"- **Speed to {TARGET_ACCURACY}%**: {fast} got there first (epoch {s[fast]['first']:.1f} on average), "
               f"{slow} last (epoch {s[slow]['first']:.1f}).")
    if "GBN" in s and "L2+BN" in s:
        d = s["GBN"]["final"] - max(s[k]["final"] for k in s if k.endswith("+BN"))
        out.append(f"- **Ghost BN vs BN**: GBN alone ends {abs(d):.2f} points {'above' if d >= 0 else 'below'} the best "
                   "BN variant; its noisier statistics (32 images per virtual batch) regularise like a smaller batch.")
    if "L1+BN" in s and "L1+L2+BN" in s:
        d = s["L1+L2+BN"]["final"] - s["L1+BN"]["final"]
        out.append(f"- **Adding L2 to L1** (BN): {d:+.2f} points in final accuracy.")
    gap = statistics.mean(s[k]["train"] - s[k]["final"] for k in s)
    out.append(f"- **Over-fitting**: final train accuracy (measured with the training augmentation on) is {abs(gap):.2f} "
               f"points {'above' if gap > 0 else 'below'} test accuracy on average"
               + (": the network under-fits rather than over-fits, so strong penalties would only cost accuracy."
                  if gap <= 0 else ": some over-fitting remains for the regularisers to fight."))
    return out


REPORTS = {"session2": session2, "session3": session3}


def write(runs_dir=None, out_root: Path | None = None, sessions=tuple(REPORTS)) -> list[Path]:
    """Render the READMEs of ``sessions`` into ``<out_root>/sessions/<session>/`` (default: the repository).

    Rendering one session leaves the other's README as it is: a machine that only has the Session 3
    records (say, after a Session 3 sweep) must not overwrite the Session 2 report with "no records".
    """
    runs_dir = Path(runs_dir or ROOT / "runs")
    out_root = Path(out_root or ROOT)
    written = []
    for name in sessions:
        fn = REPORTS[name]
        out_dir = out_root / "sessions" / name
        out_dir.mkdir(parents=True, exist_ok=True)
        text = fn(runs_dir, out_dir)
        (out_dir / "README.md").write_text(text.rstrip() + "\n")
        written.append(out_dir / "README.md")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", default=str(ROOT / "runs"))
    ap.add_argument("--session", choices=sorted(REPORTS), action="append",
                    help="render only this session's report (repeatable; default: every session)")
    args = ap.parse_args(argv)
    for p in write(args.runs_dir, sessions=args.session or tuple(REPORTS)):
        print(f"wrote {p.relative_to(ROOT)}")
    print("figures in sessions/session*/figures/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
