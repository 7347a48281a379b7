"""Run the jobs the ledger lacks, ``--jobs`` at a time, and record each in the ledger when it finishes.

Work folders (checkpoints, logs, caches) live in the git-ignored ``--work-dir``
(``runs/sweep-<profile>``): ``<job id>/<step>/`` per script run and ``cache/`` shared by all jobs
(decoded images, spectral bands). A job interrupted half-way continues: a step that finished is
not run again, a step that left a checkpoint continues with ``--resume``. A work folder made by
other code or settings than the job's now is deleted first, so no result mixes code versions.

When a job finishes, its final checkpoints are kept outside git in ``Context.checkpoints``
(``runs/checkpoints/<profile>/<job id>/<step>.pt``, e.g. ``.../imagenette/plain/seed0/train.pt``; the
smoke profile's in its work folder), each copied atomically, so that a later evaluation of a run (a
test script's ``--checkpoint``) needs no retraining, even after its work folder is cleared; the
ledger never holds checkpoints.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from toolkit import io_utils
from toolkit.errors import UserError
from toolkit.fingerprint import fingerprint
from toolkit.io_utils import git_state, read_json, write_json

from . import ledger
from .plan import REPO, Job, command
from .profiles import Profile

__all__ = ["Context", "prepare_data", "sha256", "run_job", "sweep", "estimate_seconds", "measured_rates", "release_tags", "JobFailed"]

SMOKE_SIZES = {"cifar10": 8, "imagenette": 6, "flowers102": 1, "celeba": 24}


class JobFailed(Exception):
    """A script of the job exited with an error; the message names the step and its log."""


@dataclass
class Context:
    profile: Profile
    work: Path
    ledger: Path
    data: dict                              # dataset -> archive
    jobs: int
    threads: Optional[int]
    commit: bool = False
    log: Callable = print
    data_sha: dict = field(default_factory=dict)
    checkpoints: Optional[Path] = None      # where finished jobs' final checkpoints are kept (None: not kept)

    def cache(self) -> Path:
        return self.work / "cache"


def prepare_data(profile: Profile, names, data_root: Path, work: Path) -> dict:
    """The archive of each dataset: ``<data_root>/<name>.zip``, or for ``smoke`` a tiny generated one."""
    out = {}
    for name in names:
        if profile.generated_data:
            # The smoke profile checks the pipeline on the test suite's own tiny photographs.
            from tests.photo_data import make_test_dataset
            path = work / "data" / f"{name}.zip"
            if not path.exists():
                make_test_dataset(name, path, n_per_class=SMOKE_SIZES[name], image_size=32)
        else:
            path = Path(data_root) / f"{name}.zip"
            if not path.is_file():
                raise UserError(f"{path}: not found; pass --data-root the folder that holds {name}.zip "
                                f"(e.g. ../shared/data)")
        out[name] = path
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------- one job

def _job_folder(job: Job, ctx: Context, fp: str) -> Path:
    """The job's work folder; one left by other code or settings is cleared (its checkpoints would mix them)."""
    folder = ctx.work / job.id
    want = {"spec": job.spec(), "fingerprint": fp}
    have = read_json(folder / "job.json")
    if have is not None and have != want:
        ctx.log(f"clear {job.id}: its work folder was made by other code or settings")
        shutil.rmtree(folder)
    write_json(folder / "job.json", want)
    return folder


def _run_step(job: Job, step, ctx: Context, folder: Path) -> dict:
    """Run one script (unless it already finished here); returns its record (command, times) for run.json."""
    argv = command(job, step, data=ctx.data.get(job.dataset, ""), work=ctx.work, cache=ctx.cache(),
                   device=ctx.profile.device)
    out = folder / step.name
    done = read_json(out / "done.json")
    if done is not None and done.get("argv") == argv:
        return done["record"]
    resumed = step.resumable and (out / "checkpoint.pt").is_file()
    run_argv = argv + (["--resume"] if resumed else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if ctx.threads:
        # torch reads these at start-up: one thread per job keeps parallel jobs from fighting over cores.
        env.update(OMP_NUM_THREADS=str(ctx.threads), MKL_NUM_THREADS=str(ctx.threads))
    out.mkdir(parents=True, exist_ok=True)
    started, t0 = _utc(), time.perf_counter()
    with open(out / "log.txt", "a") as f:
        f.write("$ python " + " ".join(run_argv) + "\n")
        f.flush()
        rc = subprocess.run([sys.executable, *run_argv], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise JobFailed(f"{job.id}: {step.script} exited with {rc}: {_last_line(out / 'log.txt')} "
                        f"(log: {os.path.relpath(out / 'log.txt', REPO)})")
    # The times are the last attempt's: a resumed step does not count the part before the interruption.
    rec = {"command": ["python", *run_argv], "started": started, "finished": _utc(),
           "seconds": round(time.perf_counter() - t0, 1), "resumed": resumed}
    write_json(out / "done.json", {"argv": argv, "record": rec})
    return rec


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _keep_checkpoints(job: Job, ctx: Context, folder: Path) -> None:
    """Copy each resumable step's final checkpoint.pt to ``ctx.checkpoints/<job id>/<step>.pt``; a reader sees
    the old file or the new one, never half a copy (it may be evaluating the last sweep's)."""
    if ctx.checkpoints is None:
        return
    for step in job.steps:
        src = folder / step.name / "checkpoint.pt"
        if step.resumable and src.is_file():
            io_utils.atomic_write(Path(ctx.checkpoints) / job.id / f"{step.name}.pt",
                                  lambda tmp, src=src: shutil.copyfile(src, tmp))


def run_job(job: Job, ctx: Context) -> dict:
    """Run a job's steps in its work folder; returns its run.json (raises :class:`JobFailed`)."""
    fp, files = fingerprint(job.scripts)
    folder = _job_folder(job, ctx, fp)
    steps = [_run_step(job, step, ctx, folder) for step in job.steps]
    _keep_checkpoints(job, ctx, folder)
    data = ctx.data.get(job.dataset)
    return {"id": job.id, "profile": ctx.profile.name, "dataset": job.dataset, "table": job.table,
            "condition": job.condition, "seed": job.seed, "gains": job.gains, "spec": job.spec(),
            "fingerprint": fp, "code": files,
            "data": {"name": Path(data).name if data else None, "sha256": ctx.data_sha.get(job.dataset)},
            "steps": steps, "layout": {"jobs": ctx.jobs, "threads": ctx.threads, "device": ctx.profile.device},
            "machine": io_utils.machine(ctx.profile.device), "git": git_state(*files), "release": release_tags(files),
            "started": min(r["started"] for r in steps), "finished": max(r["finished"] for r in steps),
            "seconds": round(sum(r["seconds"] for r in steps), 1)}


# ---------------------------------------------------------------------------------- the sweep

def _finish(job: Job, fut, ctx: Context) -> bool:
    try:
        run = fut.result()
    except JobFailed as e:
        ctx.log(f"FAILED {e}")
        return False
    entry = ledger.record(ctx.ledger, ctx.profile.name, job, ctx.work / job.id, run)
    ctx.log(f"done   {job.id} ({run['seconds']:.0f} s) -> {os.path.relpath(entry, REPO)}")
    if ctx.commit:
        try:
            ledger.commit(entry, f"results/runs: {ctx.profile.name} {job.id} ({run['seconds'] / 60:.1f} min, "
                                 f"{run['machine']['cpu']}, {ctx.jobs} jobs x {ctx.threads or 'default'} threads)")
        except RuntimeError as e:
            ctx.log(f"FAILED to commit the entry ({e}); it is recorded: commit {os.path.relpath(entry, REPO)} by hand")
            return False
    return True


def sweep(jobs: list, ctx: Context) -> int:
    """Run ``jobs`` in order, ``ctx.jobs`` at a time; returns how many failed."""
    todo, running, failed, n_done = list(jobs), {}, 0, 0
    with ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
        while todo or running:
            while todo and len(running) < max(1, ctx.jobs):
                job = todo.pop(0)
                ctx.log(f"start  {job.id}")
                running[pool.submit(run_job, job, ctx)] = job
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                ok = _finish(running.pop(fut), fut, ctx)
                n_done, failed = n_done + ok, failed + (not ok)
            ctx.log(f"{n_done} done, {failed} failed, {len(todo) + len(running)} to go")
    return failed


def release_tags(files=(), repo: Path = REPO) -> list:
    """The release tags of the code a run executes: the git tags reachable from HEAD at which ``files`` are
    what the working tree holds. A sweep run from a branch of the tag (whose commits add only ledger files)
    still records the tag; a run whose code changed since does not. The report names the release from the
    ledger, so a clone without the tags still regenerates it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30)
    try:
        tags = git("tag", "--merged", "HEAD").stdout.split()
        return sorted(t for t in tags if git("diff", "--quiet", t, "--", *files).returncode == 0)
    except (OSError, subprocess.SubprocessError):
        return []


def _images_trained(flags: dict) -> Optional[int]:
    if flags.get("subset") is None or flags.get("epochs") is None:
        return None
    concat = "concat" in (flags.get("spectral-mode"), flags.get("unsharp-mode"))
    return int(flags["subset"]) * int(flags["epochs"]) * (2 if concat else 1)


def measured_rates(runs: list) -> dict:
    """Seconds of the whole machine per trained image, by dataset, from finished runs (``run.json`` dicts):
    the median over the runs that were not resumed of their time / the runs at once / images trained. It
    holds what the profile's throughput leaves out (evaluation each epoch, caches, other work on the
    machine), so it beats the profile's images/s once a dataset has a finished run."""
    per_dataset = {}
    for run in runs:
        flags = dict(run["spec"]["steps"][0]["flags"])
        images = _images_trained(flags)
        if images is None or run.get("table") == "gan" or any(s.get("resumed") for s in run.get("steps", [])):
            continue
        jobs = max(1, int(run.get("layout", {}).get("jobs", 1)))
        per_dataset.setdefault(run["dataset"], []).append(run["seconds"] / jobs / images)
    return {name: statistics.median(v) for name, v in per_dataset.items()}


def estimate_seconds(job: Job, profile: Profile, measured: Optional[dict] = None) -> Optional[float]:
    """Rough seconds of the whole machine for a job. Training: images trained times the dataset's
    ``measured`` seconds per image (``measured_rates``) where the ledger has one, else images trained /
    the profile's images per second of the machine, plus a tenth for evaluation and caches. GANs: the
    profile's wall minutes shared by its parallel runs (None when the profile has no measurement)."""
    if job.table == "gan":
        return 60 * profile.gan.minutes / max(1, profile.jobs) if profile.gan.minutes else None
    flags = dict(job.steps[0].flags)
    images = _images_trained(flags)
    if images is None:
        return None
    if measured and job.dataset in measured:
        return images * measured[job.dataset]
    rates = dict(profile.images_per_s)
    if flags.get("image-size") not in rates:
        return None
    return 1.1 * images / rates[flags["image-size"]]
