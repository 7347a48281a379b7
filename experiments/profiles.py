"""What a sweep trains: per profile, the datasets, their budgets, the conditions and the seeds.

Every dataset is trained in five conditions at one budget (same images, epochs and steps):

* ``plain``: no augmentation;
* ``spectral``: spectral TV augmentation in ``--spectral-mode replace`` (each image replaced by its
  amplified version with probability 0.5; bands 1-2, integer gains 3 or 4, as the dissertation), so
  that every step sees as many images as a plain step;
* ``unsharp``: the matched non-spectral control: a linear unsharp mask ``w = f + a (f - G_s * f)`` in the same
  replace mode, with ``s`` and the range of ``a`` chosen so that the mean perturbation size ``||w - f||`` equals
  the spectral augmentation's on the dataset's training images (``results/unsharp_matching.json``, made by
  ``python -m experiments.unsharp_match``); does the spectral condition help because of the TV bands, or would
  any perturbation of that size do?
* ``cropflip``: random crop + horizontal flip (``--std-aug``), the standard augmentation, known to
  help: the positive control that shows whether a budget can detect an augmentation effect at all;
* ``both``: spectral and crop+flip.

The dissertation's protocol (``robust128``), in the main table too, for the epochs of the
dissertation's augmented scripts (``concat_epochs``):

* ``spectral-concat``: every batch trained together with its amplified copy, one gain pair per batch
  (``--spectral-mode concat --per-batch-gains``), as the dissertation trained;
* ``unsharp-concat``: its matched control, every batch with its unsharp-masked copy, one amount per
  batch, matched per batch at the profile's image size (``python -m experiments.unsharp_match
  --per-batch``: the same mean and spread over batches of the copies' perturbation size).

Their plain control is ``plain`` as it is, at the main budget. Where the epochs are equal (Imagenette)
it is exactly the identity-copy control: a batch concatenated with an unchanged copy of itself has the
batch's mean loss, gradient and batch-norm statistics (the copies' dropout masks aside), so a copy that
changes nothing trains plain. Where concat has half the epochs (CIFAR-10: 10 against 20, as the
dissertation, equal images trained) plain has twice the steps, and ``unsharp-concat`` is the control
at equal steps.

Besides these, the dissertation's own budget with one gain per image (``concat``, in ``scale`` and
``paper``; dropped from ``scale2``, superseded by ``robust128``'s protocol) and, for CIFAR-10, an
ablation of the gain range (milder gains, and attenuation k in [0, 1), which removes fine texture);
colour runs (``--color``, vectorial TV) of plain, spectral and crop+flip; and crop+flip and spectral +
crop+flip at more epochs (``long``), which tells whether the combination is lower or only slower.

The primary metric, declared before the runs, is each run's mean test accuracy over its last
``LAST_K`` epochs (``experiments/stats.py``); the final epoch is the second column. Verdicts are
generated from the numbers with the profile's ``margin``.

The profiles:

* ``smoke``: tiny generated data, seconds; checks the pipeline (the tests run it).
* ``scale2``: the dissertation's data scale on a 2-core CPU, with enough seeds for a 95% CI of
  spectral - plain at most ``margin`` wide on each side, the unsharp control, colour, long runs and
  GAN seeds; made from the release tag named by ``release``, against whose code (not the working
  tree's) its runs are judged current or stale (``experiments/release.py``).
* ``robust128``: the dissertation's protocol against its matched control and plain, Imagenette at
  128 px and CIFAR-10 at 32 px, every run's checkpoint also tested for robustness (``test``: common
  corruptions and TV band edits, ``toolkit/robustness.py``); release ``results-v3``, its own report.
  Its CIFAR-10 conditions that scale2 trained repeat scale2's runs under the new release
  (``replicates``), and the report says whether their test accuracies agree.
* ``scale``: retired: the first sweep at that scale (60 runs, no control), kept so that its ledger
  ``results/runs/scale/`` stays readable; its runs executed release ``results-v1``.
* ``paper``: the dissertation's exact settings (batch 20, 256 px for Flowers102 and Imagenette) on a
  GPU, several runs at once on the one GPU (``--jobs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

__all__ = ["CONDITIONS", "PROTOCOL", "KEY_CONDITIONS", "COLOR_CONDITIONS", "LABELS", "SPECTRAL", "SPECTRAL_CONCAT",
           "LAYOUT_FLAGS", "DatasetPlan", "GanPlan", "Profile", "PROFILES", "SCRIPTS", "MATCHING"]

CONDITIONS = ("plain", "spectral", "unsharp", "cropflip", "both")
PROTOCOL = ("spectral-concat", "unsharp-concat")
# The comparisons the sweep is for; their seeds run before the others' (experiments/plan.py).
KEY_CONDITIONS = ("plain", "spectral", "unsharp") + PROTOCOL
COLOR_CONDITIONS = ("plain", "spectral", "cropflip")
LABELS = {"plain": "plain", "spectral": "spectral", "unsharp": "unsharp mask", "cropflip": "crop+flip",
          "both": "spectral + crop+flip", "concat": "spectral concat",
          "spectral-concat": "spectral concat, per batch", "unsharp-concat": "unsharp concat, per batch"}
MATCHING = Path(__file__).resolve().parents[1] / "results" / "unsharp_matching.json"
# The main spectral condition: the dissertation's bands and integer gains, in replace mode.
SPECTRAL = (("spectral-mode", "replace"), ("spectral-prob", 0.5), ("bands", "1,2"), ("gains", "3,5"))
MAIN_GAINS = "3,5"
# The dissertation's protocol: the batch and its amplified copy, one gain pair per batch.
SPECTRAL_CONCAT = (("spectral-mode", "concat"), ("per-batch-gains", True), ("bands", "1,2"), ("gains", MAIN_GAINS))
# Flags that change how a run lays its tensors out in memory, not what it computes (tests/test_fourier.py: the same
# first-step loss): runs that differ only in them repeat each other's experiment.
LAYOUT_FLAGS = ("channels-last",)

# plain training, spectral training, test
SCRIPTS = {
    "cifar10": ("train_pt.py", "train_pt_aug.py", "test_pt.py"),
    "imagenette": ("train_imagenette.py", "train_aug_imagenette.py", "test_imagenette.py"),
    "flowers102": ("train_flowers102.py", "train_aug_flowers102.py", "test_flowers102.py"),
}
TITLES = {"cifar10": "CIFAR-10", "imagenette": "Imagenette", "flowers102": "Flowers102", "celeba": "CelebA"}


@dataclass(frozen=True)
class DatasetPlan:
    name: str                     # a key of SCRIPTS; the data is <data-root>/<name>.zip
    budget: tuple                 # (flag, value) shared by every run of the dataset
    seeds: tuple                  # seeds of the main conditions, run early
    extra_seeds: tuple = ()       # more seeds of the main conditions, run after every dataset's first ones
    unsharp: tuple = ()           # (flag, value) of the unsharp condition (); (): no unsharp condition
    concat_epochs: Optional[int] = None   # the dissertation's augmented-script epochs (None: no concat row)
    concat_seeds: tuple = ()
    ablation: tuple = ()          # gain ranges LO,HI beyond MAIN_GAINS (same budget, replace mode)
    ablation_seeds: tuple = ()
    confusion: tuple = ()         # conditions whose seed-0 checkpoint the test script evaluates
    eval_note: str = ""           # the evaluation split, in words
    color_seeds: tuple = ()       # COLOR_CONDITIONS with --color (vectorial TV)
    long_epochs: Optional[int] = None     # crop+flip and both at these epochs too ("lower or slower")
    long_seeds: tuple = ()
    long_last: bool = False       # the long runs only when everything else is done ("if the time allows")
    main: tuple = CONDITIONS      # the conditions trained at `budget` ("unsharp" only with `unsharp` flags)
    protocol: tuple = ()          # PROTOCOL conditions, at concat_epochs ("unsharp-concat" only with its flags)
    protocol_unsharp: tuple = ()  # (flag, value) of unsharp-concat, matched per batch at the budget's image size
    late: tuple = ()              # conditions of `main` run at `seeds` only, after every other job ("if time allows")
    test: Optional[tuple] = None  # (flag, value) of a test step after every training job; None: `confusion` only

    @property
    def conditions(self) -> tuple:
        """The main table's conditions: ``main``, then ``protocol``, each unsharp one only where it is matched."""
        matched = {"unsharp": self.unsharp, "unsharp-concat": self.protocol_unsharp}
        return tuple(c for c in self.main + self.protocol if matched.get(c, True))


@dataclass(frozen=True)
class GanPlan:
    modes: tuple
    flags: tuple                  # (flag, value) for every gan.py run
    test_flags: tuple             # (flag, value) for gan_test.py
    seeds: tuple = (0,)
    # A plain DCGAN given as many updates as the evaluated generator of `components` (its u_0 stage) got.
    matched_plain: bool = False
    minutes: float = 0.0          # wall minutes of one GAN job on the profile's machine (for --dry-run)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: str
    jobs: int
    threads: Optional[int]        # torch threads per run (None: torch's default)
    datasets: tuple
    gan: Optional[GanPlan] = None
    generated_data: bool = False  # smoke: tiny archives made by tests/photo_data.py
    # Training images/s of the whole machine in the profile's layout, by image size (for estimates).
    images_per_s: tuple = ()
    report: str = "RESULTS.md"    # the report file; the README block is written for the main profile only
    readme: bool = False
    margin: float = 0.02          # "no effect larger than" this (accuracy fraction) when the 95% CI lies inside
    release: str = ""             # the git tag whose code the runs must execute (experiments/release.py)
    # A profile whose main-table runs this one's repeat at the same budget and flags (LAYOUT_FLAGS aside), under
    # another release: the report says whether their primary metrics agree.
    replicates: str = ""

    def dataset(self, name: str) -> DatasetPlan:
        return next(d for d in self.datasets if d.name == name)


def _budget(subset, size, epochs, batch, lr=1e-3) -> tuple:
    return (("subset", subset), ("image-size", size), ("epochs", epochs), ("batch-size", batch), ("lr", lr))


def _matching() -> dict:
    try:
        return json.loads(MATCHING.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{MATCHING}: unreadable ({e}); remake it with python -m experiments.unsharp_match") from e


def _unsharp(name: str) -> tuple:
    """The unsharp condition's flags, matched on ``name``'s training images (results/unsharp_matching.json)."""
    m = _matching()
    lo, hi = m["datasets"][name]["amount"]
    return (("unsharp-sigma", m["sigma"]), ("unsharp-amount", f"{lo:g},{hi:g}"), ("unsharp-prob", 0.5))


def _unsharp_concat(name: str, size: int) -> tuple:
    """The unsharp-concat condition's flags, matched per batch on ``name``'s training images at ``size`` px."""
    e = _matching().get("sizes", {}).get(name, {}).get(str(size), {}).get("per-batch")
    if e is None:
        raise RuntimeError(f"{MATCHING}: no per-batch match of {name} at {size} px; make it with python -m "
                           f"experiments.unsharp_match --datasets {name} --image-size {size} --per-batch")
    lo, hi = e["amount"]
    return (("unsharp-mode", "concat"), ("per-batch-amounts", True), ("unsharp-sigma", e["sigma"]),
            ("unsharp-amount", f"{lo:g},{hi:g}"))


def _dissertation_datasets(batch: int, large: int) -> tuple:
    """The dissertation's image counts and epochs at ``batch``; Imagenette and Flowers102 at ``large`` px."""
    return (
        DatasetPlan("cifar10", _budget(25_000, 32, 20, batch), seeds=(0, 1, 2), extra_seeds=(3, 4),
                    concat_epochs=10, concat_seeds=(0, 1, 2), ablation=("1.5,2.5", "0.0,1.0"),
                    ablation_seeds=(0, 1, 2), confusion=("plain", "spectral"),
                    eval_note="the full test split, 10,000 images"),
        DatasetPlan("imagenette", _budget(9_000, large, 15, batch), seeds=(0, 1, 2), concat_epochs=15,
                    concat_seeds=(0, 1, 2), confusion=("plain", "spectral"),
                    eval_note="the full val split, 3,925 images"),
        DatasetPlan("flowers102", _budget(6_000, large, 30, batch), seeds=(0, 1, 2), concat_epochs=30,
                    concat_seeds=(0, 1, 2), confusion=("plain", "spectral"),
                    eval_note="the official 'train' split, 1,020 images (training uses the official 'test' split)"),
    )


SMOKE = Profile(
    name="smoke",
    description="tiny generated data (8 CIFAR-10 images per class at 32x32, 2 epochs): checks the pipeline only",
    device="cpu", jobs=2, threads=1, generated_data=True, report="RESULTS-smoke.md",
    datasets=(DatasetPlan("cifar10", _budget(None, 32, 2, 16), seeds=(0, 1), concat_epochs=1, concat_seeds=(0,),
                          ablation=("1.5,2.5",), ablation_seeds=(0,), confusion=("plain", "spectral"),
                          eval_note="its test split (80 images)",
                          # not matched: the generated images say nothing about real ones
                          unsharp=(("unsharp-sigma", 1.0), ("unsharp-amount", "1.5,2.5"), ("unsharp-prob", 0.5)),
                          color_seeds=(0, 1), long_epochs=3, long_seeds=(0, 1)),),
    gan=GanPlan(modes=("plain", "components"), seeds=(0, 1), matched_plain=True,
                flags=(("image-size", 16), ("ngf", 8), ("ndf", 8), ("nz", 8), ("batch-size", 8), ("holdout", 8),
                       ("max-steps", 4), ("epochs", 1), ("states", 1)),
                test_flags=(("n-real", 4), ("spectrum-bands", 2), ("n-show", 4), ("floor-draws", 2))),
    images_per_s=((32, 1000),),
)

# Batch 128, Adam lr 1e-3, two runs at once with one thread each, chosen from results/throughput_cpu.json
# (python -m experiments.throughput; best of two tries, images/s of the whole machine):
#   32x32: batch 20 280 (1 process x 2 threads) / 397 (2 x 1); 128: 1,024 / 1,075; 256: 1,131 / 1,205
#   64x64: batch 128 328 / 277; 256: 291 / 313
# Batch 128 is within ~12% of 256 at 32x32 and as fast at 64x64, with twice the optimiser steps per
# epoch (Flowers102 would get 23 steps an epoch at 256). Two 1-thread runs match one 2-thread run and
# keep their speed when other work takes a core, where a 2-thread OpenMP team collapses (tries of
# 30-45 images/s). Adam keeps the dissertation's lr 1e-3, the usual Adam default at batch 128 too:
# Adam normalises its steps per parameter, so the linear scaling rule of SGD does not carry over.
SCALE = Profile(
    name="scale",
    description=(
        "retired, superseded by the scale2 profile (kept so that its ledger stays readable; its runs executed the "
        "code of release results-v1, commit 02d517418b, older than scale2's): the dissertation's data scale on a 2-core CPU: CIFAR-10 25,000 training images at 32x32 for 20 epochs, "
        "tested on the full 10,000-image test split; Imagenette 9,000 images for 15 epochs and Flowers102 6,000 "
        "images of its official 'test' split for 30 epochs, both at 64x64 (the dissertation: 256x256), tested on "
        "their full evaluation splits. Gray images, ResNet-18 with the MLP head, Adam at lr 1e-3 as the "
        "dissertation, but batch 128 instead of 20: on this CPU batch 20 trains 2.7-3.7x fewer images per second "
        "(results/throughput_cpu.json). Two runs at once, one thread each"),
    device="cpu", jobs=2, threads=1, report="RESULTS-scale-v1.md", release="results-v1",
    datasets=_dissertation_datasets(batch=128, large=64),
    # Last in the sweep, minutes on this CPU: the three GAN modes at equal generator updates (32 px).
    gan=GanPlan(modes=("plain", "components", "joint"),
                flags=(("image-size", 32), ("ngf", 32), ("ndf", 32), ("batch-size", 64), ("holdout", 1000),
                       ("subset", 4000), ("max-steps", 3000), ("epochs", 60)),
                test_flags=(("n-real", 1000),)),
    images_per_s=((32, 1075), (64, 300)),
)


# Seeds per arm for a 95% CI of spectral - plain at most 2 points wide on either side, on the primary metric
# (mean test accuracy of the last 5 epochs), from the first sweep's ledger (`python -m experiments.seeds
# --profile scale`; tests/test_experiments.py checks that these numbers are its output):
#   cifar10: last-5 sd 0.39 points (pooled plain/spectral, 8 df), 90% upper bound 0.59 -> 3 seeds per arm
#   imagenette: last-5 sd 0.80 points (pooled plain/spectral, 4 df), 90% upper bound 1.56 -> 7 seeds per arm
#   flowers102: last-5 sd 0.23 points (pooled plain/spectral, 4 df), 90% upper bound 0.45 -> 2 seeds per arm
# The 90% upper bound of the sd plans for a spread larger than three seeds happened to show. Every dataset gets
# at least MIN_SEEDS, so that its own spread and the power line rest on more than a handful of values.
SEEDS_ESTIMATE = {"cifar10": 3, "imagenette": 7, "flowers102": 2}
MIN_SEEDS = 5


def _scale2_datasets() -> tuple:
    n = {k: max(v, MIN_SEEDS) for k, v in SEEDS_ESTIMATE.items()}
    first, extra = (0, 1, 2), lambda name: tuple(range(3, n[name]))
    base = {d.name: d for d in _dissertation_datasets(batch=128, large=64)}
    # No concat rows (one gain per image): the robust128 profile runs the dissertation's protocol, with a control.
    return (
        replace(base["cifar10"], seeds=first, extra_seeds=extra("cifar10"), unsharp=_unsharp("cifar10"),
                color_seeds=first, long_epochs=40, long_seeds=first, long_last=True, concat_seeds=()),
        replace(base["imagenette"], seeds=first, extra_seeds=extra("imagenette"), unsharp=_unsharp("imagenette"),
                concat_seeds=()),
        replace(base["flowers102"], seeds=first, extra_seeds=extra("flowers102"), unsharp=_unsharp("flowers102"),
                long_epochs=60, long_seeds=first, concat_seeds=()),
    )


SCALE2 = Profile(
    name="scale2",
    description=(
        "the dissertation's data scale on a 2-core CPU: CIFAR-10 25,000 training images at 32x32 for 20 epochs, "
        "tested on the full 10,000-image test split; Imagenette 9,000 images for 15 epochs and Flowers102 6,000 "
        "images of its official 'test' split for 30 epochs, both at 64x64 (the dissertation: 256x256; the local "
        "archives hold them at 128 px at most, so 256 px needs the original downloads and a GPU), tested on their "
        "full evaluation splits. Gray images unless marked colour, ResNet-18 with the MLP head, Adam at lr 1e-3 as "
        "the dissertation, but batch 128 instead of 20: on this CPU batch 20 trains 2.7-3.7x fewer images per "
        "second (results/throughput_cpu.json). Two runs at once, one thread each"),
    device="cpu", jobs=2, threads=1, readme=True, release="results-v2",
    datasets=_scale2_datasets(),
    # The first sweep's GAN job (three modes, 3,000 updates at 32 px) took 10 minutes; the matched plain run and
    # the noise floor's draws add a little.
    gan=GanPlan(modes=("plain", "components", "joint"), seeds=(0, 1, 2), matched_plain=True, minutes=13,
                flags=(("image-size", 32), ("ngf", 32), ("ndf", 32), ("batch-size", 64), ("holdout", 1000),
                       ("subset", 4000), ("max-steps", 3000), ("epochs", 60)),
                test_flags=(("n-real", 1000), ("floor-draws", 5))),
    images_per_s=((32, 1075), (64, 300)),
)

# robust128's seeds per arm, until its own first three seeds give their spread (python -m experiments.seeds
# --profile robust128 then estimates from plain and the protocol's two conditions): no run at 128 px exists yet, and
# the nearest spread is scale2's Imagenette at 64 px (python -m experiments.seeds --profile scale2, 4 seeds done):
#   imagenette: last-5 sd 0.84 points (pooled plain/spectral, 6 df), 90% upper bound 1.38 -> 6 seeds per arm
# CIFAR-10 keeps the first three (scale2's estimate there: 3 per arm).
ROBUST_SEEDS_ESTIMATE = {"imagenette": 6}


def _robustness(images: int) -> tuple:
    """The test step's flags: clean top-1 on the whole evaluation split, and robustness on ``images`` of it (the
    15 corruptions x 5 severities and the TV band edits of toolkit/robustness.py)."""
    return (("robustness", True), ("robustness-images", images), ("corruptions", "all"))


def _robust128_datasets() -> tuple:
    first = (0, 1, 2)
    base = {d.name: d for d in _dissertation_datasets(batch=128, large=128)}
    n = max(ROBUST_SEEDS_ESTIMATE["imagenette"], MIN_SEEDS)
    # Robustness evaluates its subset 78 times (clean, 15 corruptions x 5 severities, 2 band edits): at 128 px one
    # core evaluates ~32 images/s (by hand), so 500 images take ~20 min a run, a sixth of a plain run's training,
    # left out of the --dry-run hours; CIFAR-10's 1,000 at 32 px (~800 images/s) take ~2 min.
    # channels_last leaves the maths unchanged and trained 1.20x faster at 128 px with one run on two threads, the
    # layout whose single run is fastest, and 1.07x at 32 px with two runs of one thread; torch.compile gained no more
    # (1.18x and 1.06x) and is left out (results/formats/throughput_cpu.json, measured with nothing else running).
    fast = (("channels-last", True),)
    base = {k: replace(d, budget=d.budget + fast) for k, d in base.items()}
    return (
        replace(base["imagenette"], seeds=first, extra_seeds=tuple(range(3, n)), main=("plain", "spectral"),
                late=("spectral",), protocol=PROTOCOL, protocol_unsharp=_unsharp_concat("imagenette", 128),
                concat_seeds=(), confusion=(), test=_robustness(500)),
        replace(base["cifar10"], seeds=first, extra_seeds=(), main=("plain", "spectral", "unsharp", "cropflip"),
                unsharp=_unsharp("cifar10"), protocol=PROTOCOL, protocol_unsharp=_unsharp_concat("cifar10", 32),
                concat_seeds=(), ablation=(), ablation_seeds=(), confusion=(), test=_robustness(1000)),
    )


# Images/s of the whole machine, for estimates only (the ledger's own runs replace them once there are some): at
# 128 px one run on two threads with channels_last trained 40 images/s in a 30 s window (results/formats), but
# scale2's finished runs trained at 0.36-0.45 of their profile's rates (evaluation every epoch, other work on the
# shared machine), so about half of it; at 32 px scale2's 392.
ROBUST128 = Profile(
    name="robust128",
    description=(
        "the dissertation's protocol against a matched control, with robustness: Imagenette 9,000 training images at "
        "128x128 (the largest the local archive holds) for 15 epochs, plain against spectral concat (every batch "
        "trained with its amplified copy, one gain pair per batch, as the dissertation) and unsharp concat (the same "
        "with the unsharp mask, one amount per batch, matched per batch in perturbation size), spectral in replace "
        "mode last; CIFAR-10 25,000 images at 32x32: plain, spectral, unsharp mask and crop+flip for 20 epochs, "
        "spectral concat and unsharp concat for 10 (the dissertation's augmented budget). Every run's checkpoint is "
        "tested on the full evaluation split and for robustness (15 common corruptions x 5 severities, TV bands "
        "removed and amplified) on a fixed subset of it. Gray images, ResNet-18 with the MLP head, Adam at lr 1e-3, "
        "batch 128, channels_last memory format; one run at a time on two threads (CIFAR-10: two runs, one thread "
        "each)"),
    # One run at a time on both cores: at 128 px with channels_last it trains more images/s than two 1-thread runs
    # (51.1 against 48.7, results/formats/throughput_cpu.json), and each run ends in half the time, within a 3-hour
    # session. CIFAR-10 runs 2 x 1 (--jobs 2 --threads-per-job 1): 673 against 516 images/s at 32 px.
    device="cpu", jobs=1, threads=2, report="RESULTS-robust.md", release="results-v3", replicates="scale2",
    datasets=_robust128_datasets(),
    images_per_s=((32, 392), (128, 21)),
)

PAPER = Profile(
    name="paper",
    description=(
        "the dissertation's exact settings on one GPU: batch 20, Adam lr 1e-3, CIFAR-10 25,000 images at 32x32 "
        "for 20 epochs, Imagenette 9,000 images for 15 epochs and Flowers102 6,000 images for 30 epochs at "
        "256x256, full evaluation splits; six runs share the GPU at once (batch 20 leaves it mostly idle)"),
    device="cuda", jobs=6, threads=2, report="RESULTS-paper.md",
    datasets=_dissertation_datasets(batch=20, large=256),
    gan=GanPlan(modes=("plain", "components", "joint"), flags=(("epochs", 5),), test_flags=(("n-real", 1000),)),
)

PROFILES = {p.name: p for p in (SMOKE, SCALE2, ROBUST128, SCALE, PAPER)}
