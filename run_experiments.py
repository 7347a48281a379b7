"""Does spectral TV augmentation help? Run the comparison, keep every finished run, write RESULTS.md.

The sweep drives the top-level scripts as subprocesses; per dataset it trains plain, spectral, the
matched unsharp-mask control, crop+flip (the positive control) and both at one budget over several
seeds, colour and longer runs, the dissertation's own concat budget and, for CIFAR-10, a gain
ablation (``experiments/profiles.py``). Each finished
job's small files go to the ledger ``results/runs/<profile>/<job>/`` (``--commit`` commits each
entry as it lands), and jobs found there are skipped, so a sweep continues from any clone that has
the ledger. Each job's final checkpoints are kept, outside git, in ``runs/checkpoints/<profile>/``
(``experiments/runner.py``), so that a later evaluation needs no retraining. ``RESULTS.md``, its
figures and the README results block are rebuilt from the ledger alone; ``--report-only`` does only
that. The ``smoke`` profile keeps its ledger, report and checkpoints in its work folder
(``runs/sweep-smoke``), away from the committed files.

    python run_experiments.py --profile scale2 --dry-run       # the plan: done / pending / stale, hours left
    python run_experiments.py --profile scale2 --commit        # run what is missing, commit each run
    python run_experiments.py --profile scale2 --report-only   # RESULTS.md from results/runs/scale2/
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import threading
from pathlib import Path

from toolkit import cli
from experiments import ledger, plan, release, report, runner, summary
from experiments.profiles import PROFILES
from experiments.report import README_END, README_START, update_readme  # noqa: F401  (the README's test uses them)

ROOT = Path(__file__).resolve().parent


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("run_experiments.py", "Run the spectral-augmentation comparison and write RESULTS.md")
    p.add_argument("--profile", choices=tuple(PROFILES), default="scale2",
                   help="smoke: tiny generated data; scale2: the dissertation's data scale on a CPU, with the "
                        "unsharp control, colour, long runs and enough seeds; robust128: the dissertation's concat "
                        "protocol against its matched control, Imagenette at 128 px and CIFAR-10, with robustness; "
                        "scale: the first, retired sweep at that scale (its ledger only); paper: the dissertation's "
                        "settings on a GPU")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="runs at once; None: the profile's")
    p.add_argument("--threads-per-job", type=int, default=None, metavar="N",
                   help="torch threads of each run; None: the profile's")
    cli.renamed_flag(p, "--threads", "--threads-per-job N", "--threads is bench_pock.py's list of thread counts")
    p.add_argument("--data-root", default="../shared/data", metavar="DIR",
                   help="folder holding the archives cifar10.zip, imagenette.zip, flowers102.zip, celeba.zip")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="checkpoints, logs and caches (git-ignored); None: runs/sweep-<profile>")
    p.add_argument("--ledger-dir", default=None, metavar="DIR",
                   help="the run ledger; None: results/runs (smoke: <work-dir>/ledger, never the committed one)")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where the report, its figures (results/<profile>/) and README.md's block are written; "
                        "None: this repository (smoke: <work-dir>/report)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="only the jobs matching: a job id or its start (cifar10, cifar10/plain) or a shell pattern "
                        "(*/cropflip/*); repeat for several")
    p.add_argument("--commit", action="store_true", help="git-commit each finished job's ledger entry (only that folder)")
    p.add_argument("--dry-run", action="store_true", help="list the plan with done / pending / stale and exit")
    p.add_argument("--report-only", action="store_true", help="run nothing; rewrite the report from the ledger")
    return p


def _logger(path: Path):
    lock = threading.Lock()

    def log(msg: str) -> None:
        line = f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}"
        with lock:
            print(line, flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(line + "\n")
    return log


def dry_run(profile, jobs, states, runs) -> None:
    """The plan, one line per job: status, estimated minutes of the whole machine, id, first command's flags.
    ``runs`` are the ledger's finished runs, whose times make the estimates where a dataset has one."""
    total = {}
    measured = runner.measured_rates(runs)
    print(f"{'status':<16} {'machine':>9}  {'job':<32} first script and its flags")
    for job in jobs:
        st, why = states[job.id]
        est = runner.estimate_seconds(job, profile, measured)
        if st != "done" and est is not None:
            total[job.dataset] = total.get(job.dataset, 0.0) + est
        flags = " ".join(f"--{f}" + ("" if v is True else f" {v}") for f, v in job.steps[0].flags)
        print(f"{st + (f' ({why})' if why else ''):<16} {'' if est is None else f'~{est / 60:4.0f} min':>9}  "
              f"{job.id:<32} {job.steps[0].script} {flags}")
    counts = {s: sum(1 for v, _ in states.values() if v == s) for s in ("done", "pending", "stale")}
    print(f"\n{len(jobs)} jobs: {counts['done']} done, {counts['pending']} pending, {counts['stale']} stale")
    if total:
        hours = sum(total.values()) / 3600
        sources = ", ".join(f"{k} from {'its finished runs' if k in measured else 'the profile'}" for k in total)
        print("estimated wall time left, by dataset (images to train x seconds per image of the whole machine, "
              "from the ledger's finished runs of the dataset (median), else the profile's measured images/s "
              f"+10%; GANs: the profile's minutes per job; {sources}): "
              + ", ".join(f"{k} {v / 3600:.1f} h" for k, v in total.items())
              + f"; all {hours:.1f} h, {math.ceil(hours / 3)} session(s) of 3 h in plan order")


def _defaults(args, profile) -> None:
    """Work, ledger, report and kept-checkpoint folders; the smoke profile keeps them all in its work folder."""
    args.work_dir = Path(args.work_dir or ROOT / "runs" / f"sweep-{profile.name}").resolve()
    scratch = profile.generated_data
    args.ledger_dir = Path(args.ledger_dir or (args.work_dir / "ledger" if scratch else ledger.DEFAULT_ROOT))
    args.report_dir = Path(args.report_dir or (args.work_dir / "report" if scratch else ROOT))
    args.checkpoint_dir = args.work_dir / "checkpoints" if scratch else ROOT / "runs" / "checkpoints" / profile.name


def _release(profile, dry_run: bool):
    """The manifest of the profile's release (None: not pinned). A dry run of a release not cut yet judges the
    ledger against the working tree, so that a new profile's plan and hours can be read before its tag exists."""
    if not profile.release:
        return None
    if dry_run and not release.manifest_path(profile.release).is_file():
        print(f"note: release {profile.release} is not cut yet (no results/releases/{profile.release}.json): the "
              f"states below are the working tree's; before the sweep, tag the commit it runs (git tag "
              f"{profile.release}) and python -m experiments.release {profile.release}")
        return None
    return release.load(profile.release)


def main(args) -> int:
    profile = PROFILES[args.profile]
    _defaults(args, profile)
    jobs_n = args.jobs if args.jobs is not None else profile.jobs
    if jobs_n < 1:
        raise cli.UserError(f"--jobs must be positive, got {jobs_n}")
    ledger_root = Path(args.ledger_dir)
    if args.commit and not ledger_root.resolve().is_relative_to(ROOT):
        raise cli.UserError(f"--commit needs the ledger inside this repository, not {args.ledger_dir}")
    planned = plan.plan(profile)
    jobs = plan.select(planned, args.only)
    if args.only and not jobs:
        raise cli.UserError(f"--only {' '.join(args.only)} matches no job of the {profile.name} profile; "
                            f"--dry-run lists them")
    if not args.report_only:
        rel = _release(profile, args.dry_run)
        entries = {j.id: ledger.read_entry(ledger_root, profile.name, j.id) for j in jobs}
        states = {j.id: ledger.status(j, entries[j.id], rel) for j in jobs}
        if args.dry_run:
            # Times come from every finished run of the profile, not only the selected ones: a selection of
            # pending jobs would otherwise fall back to the profile's rough images/s.
            finished = [e.run for e in ledger.read_all(ledger_root, profile.name, planned, rel) if e.status == "current"]
            dry_run(profile, jobs, states, finished)
            return 0
        todo = [j for j in jobs if states[j.id][0] != "done"]
        if rel:
            check_release(profile, rel, todo)
        failed = _sweep(args, profile, todo, len(jobs), jobs_n)
    else:
        failed = 0
    written = report.write(summary.summarize(profile, ledger_root), args.report_dir)
    print("wrote " + ", ".join(os.path.relpath(args.report_dir / w) for w in written))
    return 1 if failed else 0


def check_release(profile, rel: dict, todo: list) -> None:
    """Refuse to run a job of a pinned profile with code other than the release's: its run would be stale."""
    for job in todo:
        changed = release.differences(job.scripts, rel)
        if changed:
            tag = rel["tag"]
            raise cli.UserError(
                f"the {profile.name} profile is pinned to release {tag} (commit {rel['commit'][:12]}), but this "
                f"checkout's code differs from it in {', '.join(changed)}, which {job.id} executes; run the sweep "
                f"from a worktree of the tag: git worktree add -b sweep-{tag} ../{tag} {tag}")


def _sweep(args, profile, todo, n_jobs, jobs_n) -> int:
    work = args.work_dir
    names = sorted({j.dataset for j in todo})
    data = runner.prepare_data(profile, names, Path(args.data_root), work)
    ctx = runner.Context(profile, work, Path(args.ledger_dir), data, jobs_n,
                         args.threads_per_job if args.threads_per_job is not None else profile.threads, args.commit,
                         _logger(work / "sweep.log"), {k: runner.sha256(v) for k, v in data.items()},
                         checkpoints=args.checkpoint_dir)
    ctx.log(f"{profile.name}: {n_jobs} jobs, {n_jobs - len(todo)} already in the ledger, {len(todo)} to run, "
            f"{ctx.jobs} at a time with {ctx.threads or 'default'} threads each; work folder "
            f"{os.path.relpath(work, ROOT)}, final checkpoints kept in {os.path.relpath(args.checkpoint_dir, ROOT)}")
    return runner.sweep(todo, ctx)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
