"""A profile turned into an ordered list of jobs, each a few script runs, with their command lines.

A job is what the ledger records as one entry: a training run and, for the conditions whose
confusion matrix the report shows, the test script on its checkpoint; or the GAN runs and
``gan_test.py`` on them. A job's ``spec`` is everything that decides its result except the code
(the scripts and the flags that change what they compute); the machine-dependent flags (paths,
device, progress bars) are added only when the command is built, so a ledger entry made on one
machine is current on another.

The order is the order of information: per dataset the positive control first (plain and
crop+flip), then spectral and both, the dissertation's concat budget, the ablation; CIFAR-10 before
Imagenette before Flowers102; the extra seeds after every dataset. A sweep cut short after any
number of sessions has the most informative runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .profiles import CONDITIONS, MAIN_GAINS, SCRIPTS, SPECTRAL, DatasetPlan, Profile

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
    table: str                   # main | concat | ablation | gan
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
    spectral = condition in ("spectral", "both", "concat") or table == "ablation"
    flags = [(f, v) for f, v in ds.budget if v is not None]
    if epochs is not None:
        flags = [(f, epochs if f == "epochs" else v) for f, v in flags]
    flags.append(("seed", seed))
    if condition in ("cropflip", "both"):
        flags.append(("std-aug", True))
    if spectral:
        mode = (("spectral-mode", "concat"), ("bands", "1,2"), ("gains", gains)) if condition == "concat" else \
            tuple((f, gains if f == "gains" else v) for f, v in SPECTRAL)
        flags += mode
    steps = [Step("train", aug if spectral else plain, tuple(flags), resumable=True)]
    if table == "main" and condition in ds.confusion and seed == 0:
        steps.append(Step("test", test, (), refs=(("checkpoint", "train", "checkpoint.pt"),)))
    name = condition if table != "ablation" else f"gains-{gains.replace(',', '-')}"
    return Job(f"{ds.name}/{name}/seed{seed}", ds.name, table, condition, seed, tuple(steps), gains)


def _dataset_jobs(ds: DatasetPlan) -> list:
    """One dataset's jobs in order of information (the extra seeds come later, see :func:`plan`)."""
    jobs = []
    for pair in (("plain", "cropflip"), ("spectral", "both")):
        jobs += [_train_job(ds, c, s) for s in ds.seeds for c in pair]
    jobs += [_train_job(ds, "concat", s, table="concat", epochs=ds.concat_epochs) for s in ds.concat_seeds
             if ds.concat_epochs]
    jobs += [_train_job(ds, "spectral", s, table="ablation", gains=g) for g in ds.ablation for s in ds.ablation_seeds]
    return jobs


def _gan_job(profile: Profile) -> Job:
    g = profile.gan
    steps = [Step(m, "gan.py", (("mode", m), *g.flags, ("seed", g.seed)), resumable=True) for m in g.modes]
    steps.append(Step("test", "gan_test.py", g.test_flags, data=False, refs=tuple(("run", m, "") for m in g.modes)))
    return Job(f"celeba/gan/seed{g.seed}", "celeba", "gan", "gan", g.seed, tuple(steps))


def plan(profile: Profile) -> list:
    """The profile's jobs, most informative first (see the module docstring)."""
    jobs = [j for ds in profile.datasets for j in _dataset_jobs(ds)]
    jobs += [_train_job(ds, c, s) for ds in profile.datasets for s in ds.extra_seeds for c in CONDITIONS]
    if profile.gan is not None:
        jobs.append(_gan_job(profile))
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
