"""A profile turned into an ordered list of jobs, each a few script runs, with their command lines.

A job is what the ledger records as one entry: a training run and, for the conditions whose
confusion matrix the report shows, the test script on its checkpoint; or the GAN runs and
``gan_test.py`` on them. A job's ``spec`` is everything that decides its result except the code
(the scripts and the flags that change what they compute); the machine-dependent flags (paths,
device, progress bars) are added only when the command is built, so a ledger entry made on one
machine is current on another.

The order is the order of information (:func:`plan`): the key comparison first, plain, spectral and
the unsharp control (and the dissertation's protocol with its control, where a profile has it), seed
by seed across all datasets; then crop+flip and both at those seeds; the colour runs, the longer runs
and the GAN seeds; the extra seeds (the key conditions' first), which narrow the intervals; the
dissertation's concat budget and the gain ablation, already answered by the first sweep; last the
conditions and long runs marked optional. A sweep cut short after any number of sessions has the most
informative runs.

A profile's dataset may ask for a test step after every training job (``DatasetPlan.test``, e.g. the
robustness evaluation); otherwise the test script runs on the seed-0 checkpoints of ``confusion``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .profiles import (COLOR_CONDITIONS, KEY_CONDITIONS, MAIN_GAINS, PROTOCOL, SCRIPTS, SPECTRAL, SPECTRAL_CONCAT,
                       DatasetPlan, Profile)

__all__ = ["Step", "Job", "plan", "command", "select", "REPO"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Step:
    """One script run inside a job, written into ``<job folder>/<name>``."""
    name: str
    script: str
    flags: tuple                 # (flag, value) that decide the result; value True: a switch
    data: bool = True            # takes --data-dir and --cache-dir
    refs: tuple = ()             # (flag, step, file): a path into another step's folder, e.g. its checkpoint
    resumable: bool = False      # writes checkpoint.pt; an interrupted run continues with --resume
    device: bool = True          # takes --device


@dataclass(frozen=True)
class Job:
    id: str                      # cifar10/plain/seed0: the ledger entry and the work folder
    dataset: str                 # the archive <data-root>/<dataset>.zip
    table: str                   # main | concat | ablation | color | long | gan
    condition: str
    seed: int
    steps: tuple
    gains: str = MAIN_GAINS

    @property
    def scripts(self) -> tuple:
        return tuple(dict.fromkeys(s.script for s in self.steps))

    def spec(self) -> dict:
        """What decides the result besides the code; compared with the ledger entry's."""
        return {"steps": [{"name": s.name, "script": s.script, "flags": [[f, _text(v)] for f, v in s.flags]}
                          for s in self.steps]}


def _text(v) -> str:
    return "" if v is True else str(v)


def _train_job(ds: DatasetPlan, condition: str, seed: int, table: str = "main", gains: str = MAIN_GAINS,
               epochs=None) -> Job:
    plain, aug, test = SCRIPTS[ds.name]
    spectral = condition in ("spectral", "both", "concat", "spectral-concat") or table == "ablation"
    if condition in PROTOCOL:
        epochs = ds.concat_epochs
    flags = [(f, v) for f, v in ds.budget if v is not None]
    if epochs is not None:
        flags = [(f, epochs if f == "epochs" else v) for f, v in flags]
    flags.append(("seed", seed))
    if table == "color":
        flags.append(("color", True))
    if condition in ("cropflip", "both"):
        flags.append(("std-aug", True))
    flags += {"unsharp": ds.unsharp, "unsharp-concat": ds.protocol_unsharp}.get(condition, ())
    if spectral:
        replace_mode = tuple((f, gains if f == "gains" else v) for f, v in SPECTRAL)
        flags += {"concat": (("spectral-mode", "concat"), ("bands", "1,2"), ("gains", gains)),
                  "spectral-concat": SPECTRAL_CONCAT}.get(condition, replace_mode)
    steps = [Step("train", aug if spectral else plain, tuple(flags), resumable=True)]
    if ds.test is not None or (table == "main" and condition in ds.confusion and seed == 0):
        steps.append(Step("test", test, ds.test or (), refs=(("checkpoint", "train", "checkpoint.pt"),)))
    name = {"ablation": f"gains-{gains.replace(',', '-')}", "color": f"color-{condition}",
            "long": f"{condition}-{epochs}ep"}.get(table, condition)
    return Job(f"{ds.name}/{name}/seed{seed}", ds.name, table, condition, seed, tuple(steps), gains)


def _seed_major(datasets, seeds_of, conditions_of) -> list:
    """Seed by seed, every dataset's conditions: a sweep cut short has every dataset at its first seeds."""
    most = max((len(seeds_of(ds)) for ds in datasets), default=0)
    return [_train_job(ds, c, seeds_of(ds)[i]) for i in range(most) for ds in datasets if i < len(seeds_of(ds))
            for c in conditions_of(ds)]


def _extra_jobs(ds: DatasetPlan, long: bool) -> list:
    """Colour and long runs (``long``: only the long ones marked ``long_last``, else the others)."""
    jobs = []
    if not long:
        jobs += [_train_job(ds, c, s, table="color") for s in ds.color_seeds for c in COLOR_CONDITIONS]
    if ds.long_epochs and ds.long_last == long:
        jobs += [_train_job(ds, c, s, table="long", epochs=ds.long_epochs) for s in ds.long_seeds
                 for c in ("cropflip", "both")]
    return jobs


def _old_budgets(ds: DatasetPlan) -> list:
    """The dissertation's concat budget and the gain ablation."""
    jobs = [_train_job(ds, "concat", s, table="concat", epochs=ds.concat_epochs) for s in ds.concat_seeds
            if ds.concat_epochs]
    return jobs + [_train_job(ds, "spectral", s, table="ablation", gains=g) for g in ds.ablation
                   for s in ds.ablation_seeds]


def _gan_jobs(profile: Profile) -> list:
    g = profile.gan
    names = [(m, m, ()) for m in g.modes]
    if g.matched_plain and "components" in g.modes:
        from toolkit import gan_common
        flags = dict(g.flags)
        stages = gan_common.stage_names("components", int(flags.get("states", 3)), flags.get("stage-order", "dissertation"))
        budget = gan_common.stage_budgets(flags.get("max-steps"), len(stages))[stages.index(gan_common.main_stage("components"))]
        names.append(("plain-matched", "plain", (("max-steps", budget),)))
    jobs = []
    for seed in g.seeds:
        steps = [Step(name, "gan.py", tuple((f, v) for f, v in (("mode", mode), *g.flags) if f not in dict(over))
                      + over + (("seed", seed),), resumable=True) for name, mode, over in names]
        steps.append(Step("test", "gan_test.py", g.test_flags, data=False,
                          refs=tuple(("run", n, "") for n, _, _ in names)))
        jobs.append(Job(f"celeba/gan/seed{seed}", "celeba", "gan", "gan", seed, tuple(steps)))
    return jobs


def plan(profile: Profile) -> list:
    """The profile's jobs, most informative first (see the module docstring)."""
    sets = profile.datasets
    key = lambda ds: tuple(c for c in ds.conditions if c in KEY_CONDITIONS and c not in ds.late)  # noqa: E731
    rest = lambda ds: tuple(c for c in ds.conditions if c not in KEY_CONDITIONS and c not in ds.late)  # noqa: E731
    jobs = _seed_major(sets, lambda ds: ds.seeds, key) + _seed_major(sets, lambda ds: ds.seeds, rest)
    jobs += [j for ds in sets for j in _extra_jobs(ds, long=False)]
    jobs += _gan_jobs(profile) if profile.gan is not None else []
    jobs += _seed_major(sets, lambda ds: ds.extra_seeds, key) + _seed_major(sets, lambda ds: ds.extra_seeds, rest)
    jobs += [j for ds in sets for j in _old_budgets(ds)]
    jobs += _seed_major(sets, lambda ds: ds.seeds, lambda ds: ds.late)
    jobs += [j for ds in sets for j in _extra_jobs(ds, long=True)]
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids)), "two jobs of a profile share an id"
    return jobs


def select(jobs: list, patterns) -> list:
    """The jobs matching any of ``patterns`` (``--only``): a job id, a prefix of one ending at a ``/``
    (``cifar10``, ``cifar10/plain``), or a shell pattern (``*/cropflip/*``, ``cifar10/*/seed0``)."""
    from fnmatch import fnmatchcase
    if not patterns:
        return list(jobs)
    pats = [p.strip().strip("/") for p in patterns if p.strip()]
    return [j for j in jobs if any(j.id == p or j.id.startswith(p + "/") or fnmatchcase(j.id, p) for p in pats)]


def command(job: Job, step: Step, *, data: Path, work: Path, cache: Path, device: str) -> list:
    """The argv (without the interpreter) of ``step``; paths relative to the repository, where the run starts."""
    rel = lambda p: os.path.relpath(p, REPO)  # noqa: E731  (paths in committed args.json stay machine-free)
    out = Path(work) / job.id
    argv = [step.script]
    for flag, v in step.flags:
        argv += [f"--{flag}"] + ([] if v is True else [_text(v)])
    if step.data:
        argv += ["--data-dir", rel(data), "--cache-dir", rel(cache)]
    for flag, other, name in step.refs:
        argv += [f"--{flag}", rel(out / other / name) if name else rel(out / other)]
    if step.device:
        argv += ["--device", device]
    return argv + ["--output-dir", rel(out / step.name), "--no-progress"]
