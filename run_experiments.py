"""Does spectral TV augmentation help? One command that runs the comparison and writes RESULTS.md.

The sweep drives the top-level scripts (``train_pt.py``, ``train_pt_aug.py``, ``test_pt.py``, their
Flowers102 and Imagenette twins, ``bench_pock.py``, ``gan.py``, ``gan_test.py``) as subprocesses; it has
no training loop of its own. Per dataset it trains, with 3 seeds or more:

* ``plain``: no augmentation;
* ``spectral``: spectral TV augmentation in ``--spectral-mode replace`` (each image replaced by its
  amplified version with probability 0.5), so that the number of optimiser steps and of images per
  step equal the plain run's (the scripts' default ``concat`` mode doubles the batch);
* ``std``: random crop + horizontal flip (``--std-aug``), the standard baseline;
* ``spectral+std``: both;

and reports test accuracy mean ± std with Welch's t-test against ``plain``. It also reproduces the
dissertation's own budgets (the plain run with twice the epochs of the ``concat`` augmented run), an
ablation over the amplified bands and the gain range (CIFAR-10), the spectral decomposition speed
(``bench_pock.py``) and, when the profile has GAN runs, the ``gan_test.py`` metrics.

Every run writes into its own folder under ``--sweep-dir``; a run whose folder holds a successful
``driver.json`` and the script's result file is skipped, one left half-way is resumed with
``--resume``, so an interrupted sweep continues where it stopped. At the end (or with
``--report-only``) RESULTS.md, the figures in ``--figures-dir`` and the README block between
``<!-- results:start -->`` and ``<!-- results:end -->`` are generated from the run folders.

Profiles: ``smoke`` (tiny generated data, seconds; the tests), ``cpu`` (reduced subsets and sizes,
about an hour on a 2-core CPU), ``paper`` (the dissertation's settings, for a GPU).

    python run_experiments.py --profile cpu
    python run_experiments.py --profile cpu --report-only
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from training import write_json

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_ROOT = HERE.parent / "shared" / "data"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


class ExperimentError(Exception):
    """A problem with the sweep's inputs or folders; one line saying what to do."""


# ------------------------------------------------------------------------------------- profiles
# A dataset entry: the scripts, the flags shared by all its runs (the budget), the seeds, the
# dissertation's budgets (plain epochs/subset vs concat epochs/subset), and the ablation (bands, gains).

SCRIPTS = {
    "cifar10": ("train_pt.py", "train_pt_aug.py", "test_pt.py"),
    "flowers102": ("train_flowers102.py", "train_aug_flowers102.py", "test_flowers102.py"),
    "imagenette": ("train_imagenette.py", "train_aug_imagenette.py", "test_imagenette.py"),
}
CONDITIONS = ("plain", "spectral", "std", "spectral+std")
MAIN_SPECTRAL = dict(bands="1,2", gains="3,5")
ABLATION_CPU = [("1", "3,5"), ("2", "3,5"), ("3", "3,5"), ("1,2,3", "3,5"), ("1,2", "2,3"), ("1,2", "5,9")]

PROFILES = {
    "smoke": dict(
        description="tiny generated data (8 CIFAR-10 images per class), two epochs: checks the pipeline only",
        jobs=2, threads=1, device="cpu", workers=0,
        datasets={
            "cifar10": dict(budget=dict(subset=None, image_size=32, epochs=2, batch_size=16, eval_subset=None),
                            seeds=[0, 1], curve_seeds=[0],
                            dissertation=dict(plain=dict(epochs=2), aug=dict(epochs=1)), dissertation_seeds=[0],
                            ablation=[("1", "2,3")], ablation_seeds=[0], confusion=["spectral"]),
        },
        bench=None,
        gan=dict(modes=["plain"], flags=["--image-size", "16", "--ngf", "8", "--ndf", "8", "--nz", "8",
                                         "--batch-size", "8", "--holdout", "8", "--max-steps", "2", "--epochs", "1"],
                 test_flags=["--n-real", "8", "--spectrum-bands", "2", "--n-show", "4"]),
    ),
    "cpu": dict(
        description=("reduced budgets for a 2-core CPU: CIFAR-10 1,500 training images at 32x32 for 6 epochs, "
                     "Imagenette and Flowers102 1,000 training images at 32x32 for 4 epochs; "
                     "tests on 2,000 CIFAR-10/Imagenette test images and the 1,020 Flowers102 images of its eval split"),
        jobs=2, threads=1, device="cpu", workers=0,
        datasets={
            "cifar10": dict(budget=dict(subset=1500, image_size=32, epochs=6, batch_size=32, eval_subset=2000),
                            seeds=[0, 1, 2], curve_seeds=[0],
                            dissertation=dict(plain=dict(epochs=6), aug=dict(epochs=3)),
                            ablation=ABLATION_CPU, ablation_seeds=[0], ablation_extra_seeds=[1],
                            extra_seeds=[3, 4, 5, 6, 7], confusion=["plain", "spectral"]),
            "imagenette": dict(budget=dict(subset=1000, image_size=32, epochs=4, batch_size=32, eval_subset=2000),
                               seeds=[0, 1, 2], extra_seeds=[3, 4], curve_seeds=[], confusion=["plain", "spectral"]),
            "flowers102": dict(budget=dict(subset=1000, image_size=32, epochs=4, batch_size=32, eval_subset=None),
                               seeds=[0, 1, 2], curve_seeds=[], confusion=[]),
        },
        bench=dict(n_images=256, extra=[]),
        gan=dict(modes=["plain", "components", "joint"],
                 flags=["--image-size", "32", "--ngf", "32", "--ndf", "32", "--batch-size", "64", "--holdout", "1000",
                        "--subset", "4000", "--max-steps", "300", "--epochs", "20"],
                 test_flags=["--n-real", "1000"]),
    ),
    "paper": dict(
        description=("the dissertation's settings on a GPU: CIFAR-10 25,000 images 20 epochs, Flowers102 6,000 "
                     "images 30 epochs at 256 px, Imagenette 9,000 images 15 epochs at 256 px, batch 20, full test sets"),
        jobs=1, threads=None, device="cuda", workers=4,
        datasets={
            "cifar10": dict(budget=dict(subset=25_000, image_size=32, epochs=20, batch_size=20, eval_subset=None),
                            seeds=[0, 1, 2], curve_seeds=[0, 1, 2],
                            dissertation=dict(plain=dict(epochs=20), aug=dict(epochs=10)),
                            ablation=ABLATION_CPU, ablation_seeds=[0, 1, 2], confusion=["plain", "spectral"]),
            "flowers102": dict(budget=dict(subset=6_000, image_size=256, epochs=30, batch_size=20, eval_subset=None),
                               seeds=[0, 1, 2], curve_seeds=[0],
                               dissertation=dict(plain=dict(subset=3_000, epochs=60), aug=dict(subset=6_000, epochs=30)),
                               confusion=["plain", "spectral"]),
            "imagenette": dict(budget=dict(subset=9_000, image_size=256, epochs=15, batch_size=20, eval_subset=None),
                               seeds=[0, 1, 2], curve_seeds=[0],
                               dissertation=dict(plain=dict(epochs=15), aug=dict(epochs=15)),
                               confusion=["plain", "spectral"]),
        },
        bench=dict(n_images=256, extra=["--device", "all"]),
        gan=dict(modes=["plain", "components", "joint"], flags=["--epochs", "5"], test_flags=["--n-real", "1000"]),
    ),
}


# ---------------------------------------------------------------------------------------- steps

@dataclass
class Step:
    """One subprocess: a script and its flags, run into ``out`` (relative to the sweep folder)."""
    name: str                 # e.g. cifar10/plain/seed0 (also the output folder)
    kind: str                 # train | test | bench | gan | gan_test
    script: str
    flags: list
    marker: str               # the file the script writes last: its presence means it finished
    deps: tuple = ()
    optional: bool = False    # a missing script is skipped with a note (bench_pock.py)
    info: dict = field(default_factory=dict)

    def out(self, sweep: Path) -> Path:
        return sweep / self.name


def _flag_list(settings: dict) -> list:
    out = []
    for k, v in settings.items():
        if v is None or v is False:
            continue
        out.append("--" + k.replace("_", "-"))
        if v is not True:
            out.append(str(v))
    return out


def plan(profile: dict, sweep: Path, data: dict) -> list:
    """The ordered list of steps of a profile: the main comparison first, extras last."""
    steps, by_key = [], {}
    cache = dict(decode_cache_dir=str(sweep / "cache" / "decoded"))
    common = dict(device=profile["device"], workers=profile["workers"], no_progress=True)

    def train(ds, name, settings, aug: bool, info):
        plain_script, aug_script, _ = SCRIPTS[ds]
        # Flags left at their default (None/False) and the evaluation schedule do not change the training.
        key = (ds, aug, tuple(sorted((k, str(v)) for k, v in settings.items()
                                     if k != "eval_every_epoch" and v is not None and v is not False)))
        if key in by_key:               # the same run asked for twice (e.g. the dissertation's plain run)
            return by_key[key]
        flags = _flag_list(dict(data_dir=data[ds], **settings, **common, **cache))
        if aug:
            flags += _flag_list(dict(cache_dir=str(sweep / "cache" / "bands")))
        s = Step(name, "train", aug_script if aug else plain_script, flags, "results.json",
                 info=dict(dataset=ds, **info))
        by_key[key] = s
        steps.append(s)
        return s

    # Runs that only add seeds go last: extra ablation seeds after the benchmark, extra main seeds after the GANs.
    extras, last = [], []
    for ds, cfg in profile["datasets"].items():
        budget = dict(cfg["budget"])
        main = {}
        for seed in cfg["seeds"] + cfg.get("extra_seeds", []):
            for cond in CONDITIONS:
                aug = cond.startswith("spectral")
                s = dict(budget, seed=seed, std_aug=cond.endswith("std"),
                         eval_every_epoch=seed in cfg.get("curve_seeds", []))
                if aug:
                    s.update(spectral_mode="replace", spectral_prob=0.5, **MAIN_SPECTRAL)
                args = (ds, f"{ds}/{cond}/seed{seed}", s, aug, dict(table="main", condition=cond, seed=seed))
                if seed in cfg["seeds"]:
                    main[cond, seed] = train(*args)
                else:
                    last.append(args)
        diss = cfg.get("dissertation")
        if diss:
            for seed in cfg.get("dissertation_seeds", cfg["seeds"]):
                p = dict(budget, **diss["plain"], seed=seed)
                train(ds, f"{ds}/dissertation-plain/seed{seed}", p, False,
                      dict(table="dissertation", condition="plain", seed=seed))
                a = dict(budget, **diss["aug"], seed=seed, spectral_mode="concat", **MAIN_SPECTRAL)
                train(ds, f"{ds}/dissertation-concat/seed{seed}", a, True,
                      dict(table="dissertation", condition="spectral (concat)", seed=seed))
        for seed_list, late in ((cfg.get("ablation_seeds", []), False), (cfg.get("ablation_extra_seeds", []), True)):
            for seed in seed_list:
                for bands, gains in cfg.get("ablation", []):
                    s = dict(budget, seed=seed, spectral_mode="replace", spectral_prob=0.5, bands=bands, gains=gains)
                    tag = f"b{bands.replace(',', '')}-g{gains.replace(',', '-')}"
                    args = (ds, f"{ds}/ablation-{tag}/seed{seed}", s, True,
                            dict(table="ablation", bands=bands, gains=gains, seed=seed))
                    if late:
                        extras.append(args)
                    else:
                        train(*args)
        test_script = SCRIPTS[ds][2]
        for cond in cfg.get("confusion", []):
            seed = cfg["seeds"][0]
            tr = main[cond, seed]
            flags = _flag_list(dict(checkpoint=str(sweep / tr.name / "checkpoint.pt"), data_dir=data[ds],
                                    subset=budget.get("eval_subset"), device=profile["device"],
                                    workers=profile["workers"], no_progress=True, **cache))
            steps.append(Step(f"{ds}/{cond}/seed{seed}-test", "test", test_script, flags, "metrics.json",
                              deps=(tr.name,), info=dict(dataset=ds, condition=cond, seed=seed, train=tr.name)))
    if profile.get("bench"):
        b = profile["bench"]
        flags = ["--data-dir", data["cifar10"], "--n-images", str(b["n_images"])] + list(b["extra"])
        if profile["threads"]:
            flags += ["--threads", str(profile["threads"])]
        steps.append(Step("bench", "bench", "bench_pock.py", flags, "bench.json", optional=True))
    for args in extras:
        train(*args)
    gan = profile.get("gan")
    if gan and data.get("celeba"):
        names = []
        for mode in gan["modes"]:
            flags = ["--mode", mode, "--data-dir", data["celeba"], "--cache-dir", str(sweep / "cache" / "gan"),
                     "--device", profile["device"], "--no-progress"] + list(gan["flags"])
            steps.append(Step(f"gan/{mode}", "gan", "gan.py", flags, "checkpoint.pt", info=dict(mode=mode)))
            names.append(f"gan/{mode}")
        flags = [x for n in names for x in ("--run", str(sweep / n))]
        flags += ["--device", profile["device"], "--no-progress"] + list(gan["test_flags"])
        steps.append(Step("gan/test", "gan_test", "gan_test.py", flags, "metrics.json", deps=tuple(names)))
    for args in last:
        train(*args)
    return steps


# ------------------------------------------------------------------------------------- running

def _command(step: Step, sweep: Path) -> list:
    return [sys.executable, step.script, *step.flags, "--output-dir", str(step.out(sweep))]


def finished(step: Step, sweep: Path) -> bool:
    """A run is done when the driver recorded its success and the script's last file is there."""
    out = step.out(sweep)
    rec = out / "driver.json"
    if not (rec.exists() and (out / step.marker).exists()):
        return False
    try:
        d = json.loads(rec.read_text())
    except (OSError, ValueError):
        return False
    if d.get("command") != _command(step, sweep)[1:]:
        raise ExperimentError(f"{out}: made by a different command than this profile asks for "
                              f"({d.get('command')}); delete the folder or pass another --sweep-dir")
    return d.get("rc") == 0


def run_step(step: Step, sweep: Path, threads, log) -> int:
    out = step.out(sweep)
    out.mkdir(parents=True, exist_ok=True)
    cmd = _command(step, sweep)
    resumable = step.kind in ("train", "gan") and (out / "checkpoint.pt").exists()
    if resumable:
        cmd += ["--resume", str(out / "checkpoint.pt") if step.kind == "train" else str(out)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        # torch reads these at start-up: one thread per job keeps parallel jobs from fighting over cores.
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log(f"start {step.name}{' (resume)' if resumable else ''}")
    t0 = time.time()
    with open(out / "log.txt", "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, cwd=HERE, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - t0
    rec = {"command": _command(step, sweep)[1:], "rc": rc, "seconds": round(seconds, 1),
           "finished_at": _now(), "resumed": resumable}
    write_json(rec, out / "driver.json")
    if rc == 0 and not (out / step.marker).exists():
        rc = -1
        log(f"FAILED {step.name}: exited 0 without writing {step.marker}")
    elif rc != 0:
        log(f"FAILED {step.name} (exit {rc}, {seconds:.0f} s): {_last_line(out / 'log.txt')}")
    else:
        log(f"done  {step.name} ({seconds:.0f} s)")
    return rc


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def run_sweep(steps: list, sweep: Path, jobs: int, threads, log) -> dict:
    """Run the steps not yet finished, ``jobs`` at a time, in order, each after its dependencies."""
    status = {}
    for s in steps:
        if s.optional and not (HERE / s.script).exists():
            status[s.name] = "missing-script"
            log(f"skip  {s.name}: {s.script} does not exist (optional step)")
        elif finished(s, sweep):
            status[s.name] = "done"
    todo = [s for s in steps if s.name not in status]
    if len(todo) < len(steps):
        log(f"{len(steps) - len(todo)} of {len(steps)} steps already finished or skipped")
    running = {}
    jobs = max(1, jobs)
    with ThreadPoolExecutor(jobs) as pool:
        while todo or running:
            for s in list(todo):
                if any(status.get(d) not in (None, "done") for d in s.deps):
                    status[s.name] = "blocked"
                    todo.remove(s)
                    log(f"skip  {s.name}: a step it needs did not succeed")
            ready = next((s for s in todo if all(status.get(d) == "done" for d in s.deps)), None)
            if ready is not None and len(running) < jobs:
                todo.remove(ready)
                running[pool.submit(run_step, ready, sweep, threads, log)] = ready
                continue
            if not running:   # what is left waits on steps that are not part of the sweep
                for s in todo:
                    status[s.name] = "blocked"
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                s = running.pop(fut)
                status[s.name] = "done" if fut.result() == 0 else "failed"
    return status


# --------------------------------------------------------------------------------------- helpers

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch
        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
        tv = torch.__version__
    except ImportError:
        tv = None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(), "torch": tv,
            "os": platform.platform()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_state(*paths) -> dict:
    """HEAD and whether tracked files (only ``paths`` when given) differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths], cwd=HERE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def prepare_data(profile_name: str, profile: dict, sweep: Path, data_root: Path) -> dict:
    """Dataset paths of a profile: the shared archives, or tiny generated ones for ``smoke``."""
    needed = list(profile["datasets"]) + (["celeba"] if profile.get("gan") else [])
    if profile_name == "smoke":
        import data as data_mod
        root = sweep / "data"
        sizes = {"cifar10": 8, "imagenette": 6, "flowers102": 1, "celeba": 24}
        out = {}
        for k in needed:
            p = root / f"{k}.zip"
            if not p.exists():
                data_mod.make_test_dataset(k, p, n_per_class=sizes[k], image_size=32)
            out[k] = str(p)
        return out
    out = {}
    for k in needed:
        p = data_root / f"{k}.zip"
        if not p.exists():
            if k == "celeba":
                continue   # the GAN part is optional
            raise ExperimentError(f"{p}: not found; pass --data-root the folder holding {k}.zip "
                                  f"(e.g. ../shared/data)")
        out[k] = str(p)
    return out


# ---------------------------------------------------------------------------------- statistics

def mean_std(xs: list):
    """Mean and sample standard deviation (ddof 1; None for a single value)."""
    n = len(xs)
    if n == 0:
        return None, None
    m = sum(xs) / n
    if n < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def welch(a: list, b: list):
    """Welch's t-test (unequal variances) of ``a`` against ``b``: (t, p), or (None, None) when undefined."""
    if len(a) < 2 or len(b) < 2:
        return None, None
    import warnings
    from scipy import stats
    with warnings.catch_warnings():   # identical accuracies (tiny runs): p is NaN, reported as undefined
        warnings.simplefilter("ignore", RuntimeWarning)
        r = stats.ttest_ind(a, b, equal_var=False)
    t, p = float(r.statistic), float(r.pvalue)
    if math.isnan(p):
        return None, None
    return t, p


def _pct(x, digits=1):
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _acc(xs):
    m, s = mean_std(xs)
    if m is None:
        return "–"
    return f"{100 * m:.1f} ± {100 * s:.1f}" if s is not None else f"{100 * m:.1f} (1 seed)"


def _p(p):
    return "–" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


# ---------------------------------------------------------------------------------- collecting

def collect(steps: list, sweep: Path) -> dict:
    """Results of the finished train steps, grouped: {(dataset, table, key): [run dicts]}."""
    groups = {}
    for s in steps:
        if s.kind != "train" or not finished(s, sweep):
            continue
        res = _read_json(s.out(sweep) / "results.json")
        args = _read_json(s.out(sweep) / "args.json") or {}
        recs = []
        try:
            recs = [json.loads(ln) for ln in (s.out(sweep) / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        except (OSError, ValueError):
            pass
        a = args.get("args", {})
        mult = 2 if a.get("spectral_mode") == "concat" else 1
        run = dict(name=s.name, seed=s.info["seed"], acc=res["test_acc"], steps=res["steps"],
                   images_seen=res["steps"] and sum(r.get("examples", 0) for r in recs),
                   train_images=res["train_images"], epochs=res["epochs"], batch=a.get("batch_size"),
                   batch_per_step=(a.get("batch_size") or 0) * mult, train_time=res["train_time"],
                   test_images=res.get("test_images"), records=recs, git=args.get("git", {}),
                   num_classes=(args.get("model") or {}).get("num_classes"))
        tables = [(s.info["table"], s.info.get("condition") or (s.info.get("bands"), s.info.get("gains")))]
        if s.info["table"] == "main" and s.info["condition"] == "plain":
            tables.append(("dissertation-plain-reuse", "plain"))
        for table, key in tables:
            groups.setdefault((s.info["dataset"], table, key), []).append(run)
    return groups


# ---------------------------------------------------------------------------------------- figures

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def fig_accuracy(groups, datasets, path: Path) -> bool:
    plt = _plt()
    ds_list = [d for d in datasets if any((d, "main", c) in groups for c in CONDITIONS)]
    if not ds_list:
        return False
    fig, axes = plt.subplots(1, len(ds_list), figsize=(3.6 * len(ds_list), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], ds_list):
        for i, c in enumerate(CONDITIONS):
            runs = groups.get((ds, "main", c), [])
            xs = [100 * r["acc"] for r in runs]
            if not xs:
                continue
            ax.plot([i] * len(xs), xs, "o", color=f"C{i}", alpha=0.5, ms=4)
            m, s = mean_std(xs)
            ax.errorbar([i + 0.15], [m], yerr=[s or 0], fmt="s", color=f"C{i}", capsize=4)
        ax.set_xticks(range(len(CONDITIONS)), CONDITIONS, rotation=20, fontsize=8)
        ax.set(title=ds, ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("test accuracy: seeds (dots), mean ± std (squares)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def fig_curves(groups, ds, path: Path) -> bool:
    plt = _plt()
    have = [(c, groups.get((ds, "main", c), [])) for c in CONDITIONS]
    if not any(runs for _, runs in have):
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.5, 3.2))
    any_test = False
    for i, (c, runs) in enumerate(have):
        if not runs:
            continue
        n_ep = min(len(r["records"]) for r in runs)
        if n_ep == 0:
            continue
        ep = list(range(1, n_ep + 1))
        loss = [mean_std([r["records"][e]["loss"] for r in runs])[0] for e in range(n_ep)]
        a1.plot(ep, loss, "o-", color=f"C{i}", label=f"{c} ({len(runs)} seeds)", ms=3)
        for r in runs:
            t = [(rec["epoch"], 100 * rec["test_acc"]) for rec in r["records"] if "test_acc" in rec]
            if len(t) > 1:
                any_test = True
                a2.plot([x for x, _ in t], [y for _, y in t], "o-", color=f"C{i}", alpha=0.7, ms=3,
                        label=f"{c} seed {r['seed']}")
    a1.set(xlabel="epoch", ylabel="train cross-entropy (mean over seeds)", title="training loss")
    a2.set(xlabel="epoch", ylabel="test accuracy (%)",
           title="test accuracy per epoch" if any_test else "(no per-epoch evaluation in this profile)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if a.lines:
            a.legend(fontsize=7)
    fig.suptitle(f"{ds}: learning curves", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _read_confusion(path: Path):
    import csv
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    classes = rows[0][1:]
    cm = [[int(v) for v in r[1:]] for r in rows[1:]]
    return classes, cm


def fig_confusion(tests: list, ds, path: Path) -> bool:
    """Row-normalised confusion matrices side by side (one per tested condition)."""
    import numpy as np
    plt = _plt()
    if not tests:
        return False
    fig, axes = plt.subplots(1, len(tests), figsize=(4.2 * len(tests), 3.9), squeeze=False)
    for ax, (cond, metrics, csv_path) in zip(axes[0], tests):
        classes, cm = _read_confusion(csv_path)
        cm = np.array(cm, dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if len(classes) <= 12:
            ax.set_xticks(range(len(classes)), [c[:9] for c in classes], rotation=90, fontsize=6)
            ax.set_yticks(range(len(classes)), [c[:9] for c in classes], fontsize=6)
        ax.set(xlabel="predicted", ylabel="true", title=f"{cond}: top-1 {100 * metrics['top1']:.1f}%")
        ax.title.set_fontsize(8)
    fig.suptitle(f"{ds}: row-normalised confusion matrices (seed {tests[0][1].get('seed', 0)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def fig_ablation(rows: list, plain: list, path: Path) -> bool:
    plt = _plt()
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (label, accs) in enumerate(rows):
        xs = [100 * a for a in accs]
        ax.plot([i] * len(xs), xs, "o", color="C1", alpha=0.6, ms=4)
        ax.plot([i], [mean_std(xs)[0]], "_", color="k", ms=14)
    if plain:
        m, s = mean_std([100 * a for a in plain])
        ax.axhspan(m - (s or 0), m + (s or 0), color="C0", alpha=0.15)
        ax.axhline(m, color="C0", lw=1, label="plain (mean ± std)")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=25, fontsize=7)
    ax.set(ylabel="test accuracy (%)", title="CIFAR-10 ablation: amplified bands and gain range (replace mode)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def fig_gan_spectrum(gan_m: dict, path: Path) -> bool:
    """Mean TV spectrum of each GAN's samples against the held-out faces' (no face images in the figure)."""
    spec = gan_m.get("spectrum") or {}
    t = spec.get("t")
    if not t or not spec.get("real_mean"):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(t, spec["real_mean"], "o-", lw=2.5, color="k", label="real (held-out)")
    for i, (name, r) in enumerate(gan_m["results"].items()):
        if r.get("spectrum_mean") and name != "real (held-out)":
            ax.plot(t, r["spectrum_mean"], "o-", ms=3, color=f"C{i}", label=name)
    ax.set(xlabel="t = n / lam", ylabel="mean S(t) per pixel", yscale="log", title="TV spectrum of GAN samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------- report

def _flatten(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


def bench_section(bench: dict) -> list:
    """bench.json as a table: one column per timed record (e.g. per device), one row per measure."""
    lines = []
    key = next((k for k in ("results", "records", "rows", "timings")
                if isinstance(bench.get(k), list) and bench[k] and isinstance(bench[k][0], dict)), None)
    if key:
        records = [_flatten(r) for r in bench[key]]
        labels = [str(r.get("device", i)) for i, r in enumerate(records)]
        measures = []
        for r in records:
            measures += [m for m in r if m not in measures and m != "device"]
        lines.append("| measure | " + " | ".join(labels) + " |")
        lines.append("|---|" + "|".join("---:" for _ in labels) + "|")
        lines += [f"| {m} | " + " | ".join(_cell(r.get(m)) for r in records) + " |" for m in measures]
        rest = _flatten({k: v for k, v in bench.items() if k != key})
    else:
        rest = _flatten(bench)
    if rest:
        lines += ["", "| field | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in rest.items()]
    return lines


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v).replace("|", "/")


def build_report(profile_name: str, profile: dict, steps: list, sweep: Path, status: dict,
                 figures_dir: Path, results_md: Path) -> tuple:
    """RESULTS.md text and the README block, from the run folders; writes the figures."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    meta = _read_json(sweep / "sweep.json") or {}
    groups = collect(steps, sweep)
    fig_rel = os.path.relpath(figures_dir, results_md.parent)
    counts = [len(v) for (_, table, _), v in groups.items() if table == "main"]
    seed_range = "–" if not counts else (f"{min(counts)}" if min(counts) == max(counts)
                                         else f"{min(counts)} to {max(counts)}")
    done = {s.name for s in steps if finished(s, sweep)}
    missing = [s for s in steps if s.name not in done]
    train_steps = [s for s in steps if s.kind == "train"]
    n_train_done = sum(1 for s in train_steps if s.name in done)
    machine = meta.get("machine") or machine_info()
    commits = sorted({json.dumps(r["git"], sort_keys=True) for g in groups.values() for r in g})
    L = []
    L.append("# Results: does spectral TV augmentation help?")
    L.append("")
    L.append(f"Generated by `run_experiments.py` from the run folders of the sweep `{meta.get('sweep_dir', sweep)}` "
             f"on {_now()}. Every number below is read from the files the scripts wrote; nothing is typed by hand.")
    L.append("")
    partial = n_train_done < len(train_steps) or any(s.name not in done for s in steps)
    if partial:
        L.append(f"**Partial results:** {n_train_done} of {len(train_steps)} training runs finished; the missing "
                 f"runs are listed at the end. Means and tests use the seeds that finished.")
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append(f"- Command: `{meta.get('command', 'python run_experiments.py --profile ' + profile_name)}` "
             f"(profile `{profile_name}`: {profile['description']}).")
    g = meta.get("git", {})
    runs_git = ", ".join(f"`{json.loads(c).get('commit')}`" + (" (dirty)" if json.loads(c).get("dirty") else "")
                         for c in commits)
    L.append(f"- Code: commit `{g.get('commit')}`" + (" with uncommitted changes" if g.get("dirty") else "")
             + (f"; the runs' args.json record {runs_git}." if commits else "; no run finished.")
             + same_code_note([json.loads(c).get("commit") for c in commits]))
    rg = git_state("run_experiments.py")
    if len(commits) > 1:
        by_commit = {}
        for (ds, table, _), runs in groups.items():
            if table == "dissertation-plain-reuse":
                continue
            for r in runs:
                by_commit.setdefault(r["git"].get("commit"), {}).setdefault(f"{ds} {table}", []).append(r["seed"])
        for c, parts in by_commit.items():
            L.append(f"  - `{str(c)[:7]}`: " + "; ".join(f"{k} seeds {sorted(set(v))} ({len(v)} runs)"
                                                         for k, v in sorted(parts.items())))
    L.append(f"- Reproduce: `python run_experiments.py --profile {profile_name}` runs (or resumes) the sweep and "
             f"writes this file; `--report-only` rewrites it from the finished runs. This file was written by "
             f"run_experiments.py at commit `{rg.get('commit')}`" + (" (with uncommitted changes)" if rg.get("dirty") else "") + ".")
    L.append(f"- Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
             f"{'GPU: ' + machine['gpu'] if machine.get('gpu') else 'no GPU'}; Python {machine.get('python')}, "
             f"torch {machine.get('torch')}. Jobs in parallel: {profile['jobs']}, torch threads per job: "
             f"{profile['threads'] or 'default'}. The CPU was shared with other work, so times are indicative only.")
    L.append(f"- Sweep started {meta.get('started', '?')}, report generated {_now()}.")
    for k, v in (meta.get("data") or {}).items():
        L.append(f"- Data `{k}`: `{v.get('path')}`" + (f" (sha256 `{v['sha256'][:16]}…`)" if v.get("sha256") else ""))
    L.append("- Models: ResNet-18 (torchvision, 1-channel stem) with the dissertation's MLP heads, Adam lr 1e-3, "
             "grayscale input; spectral augmentation with the scripts' defaults (lam 7, bands 1,2 amplified by "
             "integer gains drawn from [3, 5), bands cached once per training set).")
    L.append("")
    L.append("### Equal budgets")
    L.append("")
    L.append("The augmented scripts' default `--spectral-mode concat` trains every batch together with its "
             "amplified copy, so each step sees 2B images: comparing it with a plain run at the same batch and epochs "
             "gives the augmented model twice the images (and compute). The main comparison therefore uses "
             "`--spectral-mode replace --spectral-prob 0.5`: every image of a batch is replaced by its amplified "
             "version with probability 0.5, so all four conditions take the same number of optimiser steps on the "
             "same number of images per step (same batch, epochs and training subset). Giving the plain run batch 2B "
             "instead would have equalised images seen but changed the number of steps and the gradient noise, "
             "i.e. the optimisation itself. The dissertation's own setting (concat, half the epochs of the plain "
             "run: equal images seen, half the steps) is reported separately below.")
    L.append("")
    L.append("Seeds (`--seed`) change the initialisation, the batch order and the augmentation draws; the training "
             "subset (`--data-seed 0`) and the test images are the same for every run. `p` is the two-sided "
             "p-value of Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`) over the seeds; with "
             f"{seed_range} seeds per condition it detects only effects of the order of the seed-to-seed spread, and "
             "no correction for the several comparisons is applied.")
    L.append("")

    headline, findings = [], []
    for ds, cfg in profile["datasets"].items():
        b = cfg["budget"]
        L.append(f"## {ds}")
        L.append("")
        sub = b.get("subset")
        any_run = next((r for c in CONDITIONS for r in groups.get((ds, "main", c), [])), None)
        L.append(f"Budget: {any_run['train_images'] if any_run else sub} training images at {b['image_size']}x"
                 f"{b['image_size']}, {b['epochs']} epochs of batch {b['batch_size']}"
                 + (f" ({any_run['steps']} optimiser steps)" if any_run else "")
                 + (f"; tested on {any_run['test_images']} images" if any_run else "") + ".")
        L.append("")
        L.append("| condition | seeds | test accuracy % (mean ± std) | Δ vs plain (points) | Welch p vs plain | "
                 "train time s/run |")
        L.append("|---|---:|---:|---:|---:|---:|")
        plain = [r["acc"] for r in groups.get((ds, "main", "plain"), [])]
        pm = mean_std(plain)[0]
        for c in CONDITIONS:
            runs = groups.get((ds, "main", c), [])
            accs = [r["acc"] for r in runs]
            m = mean_std(accs)[0]
            _, p = welch(accs, plain) if c != "plain" else (None, None)
            delta = "" if c == "plain" or m is None or pm is None else f"{100 * (m - pm):+.1f}"
            L.append(f"| {c} | {len(runs)} | {_acc(accs)} | {delta or '–'} | {_p(p)} | "
                     f"{_cell(mean_std([r['train_time'] for r in runs])[0]) if runs else '–'} |")
        std_runs = [r["acc"] for r in groups.get((ds, "main", "std"), [])]
        both = [r["acc"] for r in groups.get((ds, "main", "spectral+std"), [])]
        _, p2 = welch(both, std_runs)
        if std_runs and both:
            L.append("")
            L.append(f"Spectral on top of crop + flip (spectral+std vs std): "
                     f"{100 * (mean_std(both)[0] - mean_std(std_runs)[0]):+.1f} points, Welch p = {_p(p2)}.")
        spec = [r["acc"] for r in groups.get((ds, "main", "spectral"), [])]
        _, p1 = welch(spec, plain)
        if plain and spec:
            headline.append((ds, mean_std(plain), mean_std(spec), p1, len(plain), len(spec)))
        findings += [(ds, "spectral", spec, "plain", plain), (ds, "crop+flip", std_runs, "plain", plain),
                     (ds, "spectral+crop+flip", both, "crop+flip", std_runs)]
        k = any_run["num_classes"] if any_run else None
        if k and pm is not None:
            L.append("")
            L.append(f"Chance level is 1/{k} = {100 / k:.1f}%; the plain models reach {pm * k:.1f} times that at this "
                     f"budget.")
        if ds == "flowers102":
            L.append("")
            L.append("Flowers102 follows the dissertation's split use: training images are drawn from the official "
                     "'test' split and accuracy is measured on the official 'train' split (1,020 images, 10 per class).")
        L.append("")

        if cfg.get("dissertation"):
            d = cfg["dissertation"]
            L.append(f"### {ds}: the dissertation's budgets")
            L.append("")
            L.append(f"Plain {d['plain'].get('epochs')} epochs vs spectral `concat` {d['aug'].get('epochs')} epochs "
                     f"(each step trains a batch and its amplified copy)"
                     + (" (training images: plain " + str(d['plain'].get('subset')) + ", augmented "
                        + str(d['aug'].get('subset')) + ")" if d['plain'].get('subset') else "")
                     + (". In this profile the budgets are scaled down from the dissertation's (plain 20 epochs vs "
                        "augmented 10, 25,000 images) to the subset and epochs above; the ratio is kept."
                        if profile_name != "paper" and ds == "cifar10" else "."))
            L.append("")
            L.append("| run | seeds | optimiser steps | images seen | test accuracy % | Welch p vs plain |")
            L.append("|---|---:|---:|---:|---:|---:|")
            dp = groups.get((ds, "dissertation", "plain")) or []
            if not dp:   # the dissertation's plain run coincides with the main plain run
                same = all(d["plain"].get(k, b.get(k)) == b.get(k) for k in ("epochs", "subset"))
                dp = groups.get((ds, "dissertation-plain-reuse", "plain"), []) if same else []
            da = groups.get((ds, "dissertation", "spectral (concat)"), [])
            for label, runs in (("plain", dp), ("spectral, concat", da)):
                accs = [r["acc"] for r in runs]
                _, p = welch(accs, [r["acc"] for r in dp]) if runs is da else (None, None)
                st = runs[0]["steps"] if runs else None
                seen = runs[0]["images_seen"] if runs else None
                L.append(f"| {label} | {len(runs)} | {st or '–'} | {seen or '–'} | {_acc(accs)} | {_p(p)} |")
            findings.append((ds, "spectral concat (dissertation budget)", [r["acc"] for r in da],
                             f"plain with {d['plain'].get('epochs')} epochs", [r["acc"] for r in dp]))
            L.append("")

        if cfg.get("ablation"):
            L.append(f"### {ds}: ablation over bands and gains")
            L.append("")
            ps = mean_std(plain)[1]
            L.append("Replace mode, same budget as the main table; band 1 is the finest scale. The row with bands "
                     "1,2 and gains [3, 5) is the main `spectral` condition."
                     + (f" For scale: the plain runs' seed-to-seed standard deviation is {100 * ps:.1f} points, so "
                        f"differences of that size between single runs are noise." if ps is not None else ""))
            L.append("")
            L.append("| bands | gains k | seeds | test accuracy % | Δ vs plain | Welch p vs plain |")
            L.append("|---|---|---:|---:|---:|---:|")
            configs = list(dict.fromkeys([(MAIN_SPECTRAL["bands"], MAIN_SPECTRAL["gains"])] + list(cfg["ablation"])))
            fig_rows = []
            for bands, gains in configs:
                if (bands, gains) == (MAIN_SPECTRAL["bands"], MAIN_SPECTRAL["gains"]):
                    runs = groups.get((ds, "main", "spectral"), [])
                else:
                    runs = groups.get((ds, "ablation", (bands, gains)), [])
                accs = [r["acc"] for r in runs]
                lo, hi = (int(v) for v in gains.split(","))
                krange = f"{{{', '.join(str(k) for k in range(lo, hi))}}}"
                m = mean_std(accs)[0]
                _, p = welch(accs, plain)
                L.append(f"| {bands} | {krange} | {len(runs)} | {_acc(accs)} | "
                         f"{'–' if m is None or pm is None else f'{100 * (m - pm):+.1f}'} | {_p(p)} |")
                if accs:
                    fig_rows.append((f"b{bands} k{krange}", accs))
            if fig_ablation(fig_rows, plain, figures_dir / f"{ds}_ablation.png"):
                L.append("")
                L.append(f"![ablation]({fig_rel}/{ds}_ablation.png)")
            L.append("")

        if fig_curves(groups, ds, figures_dir / f"{ds}_curves.png"):
            L.append(f"![{ds} learning curves]({fig_rel}/{ds}_curves.png)")
            L.append("")
        tests = []
        for s in steps:
            if s.kind == "test" and s.info.get("dataset") == ds and s.name in done:
                m = _read_json(s.out(sweep) / "metrics.json")
                csv_path = s.out(sweep) / "confusion_matrix.csv"
                if m and csv_path.exists():
                    tests.append((s.info["condition"], dict(m, seed=s.info["seed"]), csv_path))
        if fig_confusion(tests, ds, figures_dir / f"{ds}_confusion.png"):
            L.append(f"![{ds} confusion matrices]({fig_rel}/{ds}_confusion.png)")
            L.append("")
            L.append("Confusion matrices by `" + SCRIPTS[ds][2] + "` on the same test images: top-1 " + ", ".join(
                f"{c} {100 * m['top1']:.2f}%" for c, m, _ in tests) + " (equal to the training runs' final test "
                "accuracy when the checkpoint and images agree).")
            L.append("")

    if fig_accuracy(groups, list(profile["datasets"]), figures_dir / "accuracy.png"):
        L.insert(L.index("## Setup"), f"![accuracy per condition]({fig_rel}/accuracy.png)\n")

    L.append("## Spectral decomposition speed (bench_pock.py)")
    L.append("")
    bench_step = next((s for s in steps if s.kind == "bench"), None)
    bench = _read_json(sweep / "bench" / "bench.json") if bench_step and bench_step.name in done else None
    if bench:
        L.append(f"`python bench_pock.py {' '.join(bench_step.flags)}` on the machine above:")
        L.append("")
        L += bench_section(bench)
    elif bench_step and status.get(bench_step.name) == "missing-script":
        L.append("Not measured: bench_pock.py was not in the code this sweep ran (optional step, skipped).")
    else:
        L.append("Not measured in this sweep" + (" (the step did not finish)." if bench_step else
                                                 " (the profile has no benchmark step)."))
    L.append("")

    L.append("## GAN metrics (gan_test.py)")
    L.append("")
    gan_m = _read_json(sweep / "gan" / "test" / "metrics.json") if "gan/test" in done else None
    if gan_m:
        import gan_test
        fid_note = None if gan_m.get("fid_kid") == "computed" else str(gan_m.get("fid_kid"))
        g_flags = " ".join((profile.get("gan") or {}).get("flags", []))
        L.append(f"DCGANs trained by `gan.py` ({g_flags}) on CelebA faces, measured by `gan_test.py` against "
                 f"{gan_m.get('n_real')} held-out faces; SWD x1e3 (lower is better), spectrum distance = relative L1 "
                 f"distance of the mean TV spectrum to the real faces'. FID/KID: {gan_m.get('fid_kid')}. Each GAN was "
                 f"trained once (one seed), so these differences carry no significance test.")
        L.append("")
        # metrics.json of gan_test.py before it grouped runs name a run's group 'mode'.
        res = {k: dict(v, group=v.get("group", v.get("mode"))) for k, v in gan_m["results"].items()}
        L.append(gan_test.markdown_table(res, fid_note))
        if fig_gan_spectrum(gan_m, figures_dir / "gan_spectrum.png"):
            L.append("")
            L.append(f"![GAN spectra]({fig_rel}/gan_spectrum.png)")
    else:
        L.append("No GAN runs finished in this sweep.")
    L.append("")

    L.append("## Conclusion")
    L.append("")
    for ds, la, a, lb, b in findings:
        if not a or not b:
            continue
        _, p = welch(a, b)
        verdict = ("undefined (fewer than 2 seeds or no spread)" if p is None else
                   "not significant at the 5% level" if p >= 0.05 else "significant at the 5% level")
        L.append(f"- {ds}: {la} {_pct(mean_std(a)[0])}% vs {lb} {_pct(mean_std(b)[0])}% "
                 f"({100 * (mean_std(a)[0] - mean_std(b)[0]):+.1f} points, {len(a)} and {len(b)} seeds, "
                 f"Welch p = {_p(p)}): {verdict}.")
    if not headline:
        L.append("- No dataset has finished plain and spectral runs yet.")
    spectral_cmp = [(a, b) for _, la, a, _, b in findings if la.startswith("spectral") and len(a) > 1 and len(b) > 1]
    if spectral_cmp:
        better = sum(mean_std(a)[0] > mean_std(b)[0] for a, b in spectral_cmp)
        sig_better = sum(mean_std(a)[0] > mean_std(b)[0] and (welch(a, b)[1] or 1) < 0.05 for a, b in spectral_cmp)
        sig_worse = sum(mean_std(a)[0] < mean_std(b)[0] and (welch(a, b)[1] or 1) < 0.05 for a, b in spectral_cmp)
        L.append("")
        L.append(f"In sum: of {len(spectral_cmp)} comparisons with spectral augmentation, it has the higher mean "
                 f"accuracy in {better}, is significantly better (p < 0.05) in {sig_better} and significantly worse "
                 f"in {sig_worse}.")
    L.append("")
    L.append("These are small budgets (see Setup); they answer the question for this setting only and are not "
             "comparable with published full-data accuracies.")
    L.append("")
    if missing:
        L.append("## Missing runs")
        L.append("")
        for s in missing:
            st = status.get(s.name) or ("not started" if not s.out(sweep).exists() else "unfinished")
            L.append(f"- `{s.name}` ({s.kind}): {st}")
        L.append("")
    readme = readme_block(headline, meta, machine, profile_name, n_train_done, len(train_steps), results_md)
    return "\n".join(L), readme


CODE_FILES = ("pock.py", "bandcache.py", "data.py", "models.py", "training.py", "classify.py", "gan.py",
              "gan_models.py", "gan_metrics.py", "gan_test.py", "bench_pock.py") + tuple(f for t in SCRIPTS.values() for f in t)


def same_code_note(commits: list) -> str:
    """Whether the code the runs executed (everything but this driver) is the same in all their commits."""
    commits = [c for c in commits if c]
    if len(commits) < 2:
        return ""
    try:
        changed = subprocess.run(["git", "diff", "--name-only", commits[0], commits[-1], "--", *CODE_FILES],
                                 cwd=HERE, capture_output=True, text=True, timeout=20)
        if changed.returncode != 0:
            return ""
        others = [c for c in commits[1:-1] if subprocess.run(
            ["git", "diff", "--quiet", commits[0], c, "--", *CODE_FILES], cwd=HERE, timeout=20).returncode != 0]
    except (OSError, subprocess.SubprocessError):
        return ""
    if not changed.stdout.strip() and not others:
        return (" These commits differ only outside the code the runs execute (the sweep was resumed with later "
                "versions of run_experiments.py); the scripts, the TV engine and the training code are identical.")
    return (f" Between these commits the sweep was resumed with newer code, and files the runs execute changed "
            f"({', '.join(changed.stdout.split())}); `git diff {commits[0][:7]} {commits[-1][:7]}` shows how. Which "
            f"runs used which commit is listed below.")


def readme_block(headline, meta, machine, profile_name, n_done, n_all, results_md: Path) -> str:
    lines = [f"Results of `python run_experiments.py --profile {profile_name}` ({_now()}, "
             f"{machine.get('cpu')}, {machine.get('cores')} cores, "
             f"{'GPU ' + machine['gpu'] if machine.get('gpu') else 'no GPU'}; data: "
             + ", ".join(f"`{Path(v['path']).name}`" for v in (meta.get("data") or {}).values())
             + f"; {n_done} of {n_all} training runs finished). Test accuracy, mean ± std over seeds, "
               f"plain vs spectral augmentation at equal budgets ({PROFILES[profile_name]['description']}):", ""]
    for ds, (pm_, ps_), (sm_, ss_), p, n1, n2 in headline:
        lines.append(f"- {ds}: plain {_pct(pm_)} ± {_pct(ps_)}% vs spectral {_pct(sm_)} ± {_pct(ss_)}% "
                     f"(Welch p = {_p(p)}, {n1}/{n2} seeds)")
    if not headline:
        lines.append("- no finished runs yet")
    lines += ["", f"Details, the standard-augmentation baseline, the dissertation's budgets, the ablation and the "
                  f"figures: [{results_md.name}]({results_md.name})."]
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the results markers of ``readme``; False when it has no such block."""
    if not readme.exists():
        return False
    text = readme.read_text()
    i, j = text.find(README_START), text.find(README_END)
    if i < 0 or j < i:
        return False
    new = text[: i + len(README_START)] + "\n" + block.strip() + "\n" + text[j:]
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, readme)
    return True


# ------------------------------------------------------------------------------------------- main

def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run the spectral-augmentation comparison and write RESULTS.md",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", choices=tuple(PROFILES), default="cpu", help="budgets (see the module docstring)")
    p.add_argument("--sweep-dir", default=None, help="where the runs go (default: runs/experiments-<profile>)")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding cifar10.zip, flowers102.zip, ...")
    p.add_argument("--jobs", type=int, default=None, help="runs in parallel (default: the profile's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: the profile's)")
    p.add_argument("--device", default=None, help="override the profile's device (cpu, cuda)")
    p.add_argument("--no-gan", action="store_true", help="leave out the GAN runs")
    p.add_argument("--report-only", action="store_true", help="run nothing; write the report from finished runs")
    p.add_argument("--results-md", default=str(HERE / "RESULTS.md"), help="the report to write")
    p.add_argument("--figures-dir", default=str(HERE / "results"), help="where the report's figures go")
    p.add_argument("--readme", default=str(HERE / "README.md"),
                   help="README whose results block is rewritten ('' to leave it)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    return p


def main(args) -> int:
    profile = dict(PROFILES[args.profile])
    if args.jobs is not None:
        profile["jobs"] = args.jobs
    if args.threads is not None:
        profile["threads"] = args.threads
    if args.device:
        profile["device"] = args.device
    if args.no_gan:
        profile["gan"] = None
    if profile["jobs"] < 1:
        raise ExperimentError(f"--jobs must be positive, got {profile['jobs']}")
    sweep = Path(args.sweep_dir or HERE / "runs" / f"experiments-{args.profile}").resolve()
    sweep.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.profile, profile, sweep, Path(args.data_root))
    steps = plan(profile, sweep, data)
    if args.dry_run:
        for s in steps:
            print(" ".join(_command(s, sweep)[1:]))
        return 0
    log_path = sweep / "sweep.log"

    def log(msg):
        line = f"[{datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    status = {}
    if not args.report_only:
        meta = _read_json(sweep / "sweep.json") or {}
        meta.update(command="python " + " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                    started=meta.get("started") or _now(), profile=args.profile, sweep_dir=str(sweep),
                    machine=machine_info(), git=git_state(),
                    data={k: {"path": v, "sha256": sha256(Path(v)) if args.profile != "smoke" else None}
                          for k, v in data.items()})
        write_json(meta, sweep / "sweep.json")
        log(f"sweep {sweep}: {len(steps)} steps, {profile['jobs']} in parallel")
        status = run_sweep(steps, sweep, profile["jobs"], profile["threads"], log)
    else:
        for s in steps:
            if s.optional and not (HERE / s.script).exists():
                status[s.name] = "missing-script"
    results_md = Path(args.results_md).resolve()
    text, block = build_report(args.profile, profile, steps, sweep, status, Path(args.figures_dir).resolve(),
                               results_md)
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text(text + "\n")
    print(f"wrote {results_md}")
    if args.readme:
        if update_readme(Path(args.readme), block):
            print(f"updated the results block of {args.readme}")
        else:
            print(f"note: {args.readme} has no '{README_START}' ... '{README_END}' block; left unchanged")
    failed = [n for n, v in status.items() if v in ("failed", "blocked")]
    if failed:
        print(f"{len(failed)} steps failed or were blocked: {', '.join(failed)} (see their log.txt)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(get_args_parser().parse_args()))
    except ExperimentError as e:
        sys.exit(f"error: {e}")
