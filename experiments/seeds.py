"""How many seeds a dataset needs: the spread of the primary metric in a finished sweep, turned into seeds.

For each dataset the runs of a ledger in the arms of its key contrasts give the primary metric (mean
test accuracy of the last :data:`stats.LAST_K` epochs) per seed: plain and spectral, or where the
dataset has the dissertation's protocol, plain and its two conditions (spectral-concat - plain and
spectral-concat - unsharp-concat). Their pooled standard deviation, raised to its one-sided 90% upper
confidence bound (three seeds say little about a spread), is the spread a plan assumes; the seeds per
arm are the fewest for which the 95% t interval of a difference of two arms is at most
``--half-width`` points on either side. ``experiments/profiles.py`` quotes the output.

    python -m experiments.seeds --profile scale
    python -m experiments.seeds --profile robust128     # once its first seeds are in
"""

from __future__ import annotations

import argparse
from pathlib import Path

from toolkit import cli

from . import ledger, summary
from .profiles import PROFILES, DatasetPlan
from .stats import last_mean, pooled_sd, sd_upper_bound, seeds_for_half_width

__all__ = ["estimate", "get_args_parser", "main"]


def _arms(ds: DatasetPlan) -> tuple:
    return ("plain",) + (ds.protocol or ("spectral",))


def estimate(profile_name: str = "scale", root: Path = ledger.DEFAULT_ROOT, half_width: float = 2.0,
             level: float = 0.9) -> dict:
    """``{dataset: {each arm (primary metric per seed, %), sd, df, sd_bound, seeds}}`` from the ledger, whether
    its runs are current or not (the spread of a metric outlives small code changes)."""
    s = summary.summarize(PROFILES[profile_name], Path(root))
    out = {}
    for ds in PROFILES[profile_name].datasets:
        arms = {c: [100 * last_mean([a for _, a in r.curve]) for r in s.runs
                    if r.dataset == ds.name and r.table == "main" and r.condition == c and r.curve]
                for c in _arms(ds)}
        if min(len(v) for v in arms.values()) < 2:
            continue
        sd = pooled_sd(*arms.values())
        df = sum(len(v) for v in arms.values()) - len(arms)
        bound = sd_upper_bound(sd, df, level)
        out[ds.name] = {**arms, "sd": sd, "df": df, "sd_bound": bound,
                        "seeds": seeds_for_half_width(bound, half_width)}
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("python -m experiments.seeds", __doc__.split("\n")[0])
    p.add_argument("--profile", default="scale", choices=tuple(PROFILES), help="the profile whose ledger is read")
    p.add_argument("--ledger-dir", default=None, metavar="DIR",
                   help="the run ledger; None: this repository's results/runs")
    p.add_argument("--half-width", type=float, default=2.0,
                   help="largest half-width, in points, of the 95%% CI of spectral - plain")
    p.add_argument("--level", type=float, default=0.9,
                   help="confidence of the upper bound on the standard deviation (0.9: one-sided 90%%)")
    return p


def main(args) -> dict:
    root = ledger.DEFAULT_ROOT if args.ledger_dir is None else Path(args.ledger_dir)
    est = estimate(args.profile, root, args.half_width, args.level)
    for name, e in est.items():
        arms = "/".join(k for k in e if k not in ("sd", "df", "sd_bound", "seeds"))
        print(f"{name}: last-5 sd {e['sd']:.2f} points (pooled {arms}, {e['df']} df), "
              f"{100 * args.level:g}% upper bound {e['sd_bound']:.2f} -> {e['seeds']} seeds per arm")
    return est


if __name__ == "__main__":
    cli.run(main, get_args_parser())
