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

Besides these, the dissertation's own budget (``concat``: every batch trained together with its
augmented copy, for the epochs of the dissertation's augmented scripts) and, for CIFAR-10, an
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

__all__ = ["CONDITIONS", "KEY_CONDITIONS", "COLOR_CONDITIONS", "LABELS", "SPECTRAL", "DatasetPlan", "GanPlan",
           "Profile", "PROFILES", "SCRIPTS", "MATCHING"]

CONDITIONS = ("plain", "spectral", "unsharp", "cropflip", "both")
# The comparisons the sweep is for; their seeds run before the others' (experiments/plan.py).
KEY_CONDITIONS = ("plain", "spectral", "unsharp")
COLOR_CONDITIONS = ("plain", "spectral", "cropflip")
LABELS = {"plain": "plain", "spectral": "spectral", "unsharp": "unsharp mask", "cropflip": "crop+flip",
          "both": "spectral + crop+flip", "concat": "spectral concat"}
MATCHING = Path(__file__).resolve().parents[1] / "results" / "unsharp_matching.json"
# The main spectral condition: the dissertation's bands and integer gains, in replace mode.
SPECTRAL = (("spectral-mode", "replace"), ("spectral-prob", 0.5), ("bands", "1,2"), ("gains", "3,5"))
MAIN_GAINS = "3,5"

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

    @property
    def conditions(self) -> tuple:
        return tuple(c for c in CONDITIONS if c != "unsharp" or self.unsharp)


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

    def dataset(self, name: str) -> DatasetPlan:
        return next(d for d in self.datasets if d.name == name)


def _budget(subset, size, epochs, batch, lr=1e-3) -> tuple:
    return (("subset", subset), ("image-size", size), ("epochs", epochs), ("batch-size", batch), ("lr", lr))


def _unsharp(name: str) -> tuple:
    """The unsharp condition's flags, matched on ``name``'s training images (results/unsharp_matching.json)."""
    try:
        m = json.loads(MATCHING.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{MATCHING}: unreadable ({e}); remake it with python -m experiments.unsharp_match") from e
    lo, hi = m["datasets"][name]["amount"]
    return (("unsharp-sigma", m["sigma"]), ("unsharp-amount", f"{lo:g},{hi:g}"), ("unsharp-prob", 0.5))


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
    return (
        replace(base["cifar10"], seeds=first, extra_seeds=extra("cifar10"), unsharp=_unsharp("cifar10"),
                color_seeds=first, long_epochs=40, long_seeds=first, long_last=True),
        replace(base["imagenette"], seeds=first, extra_seeds=extra("imagenette"), unsharp=_unsharp("imagenette")),
        replace(base["flowers102"], seeds=first, extra_seeds=extra("flowers102"), unsharp=_unsharp("flowers102"),
                long_epochs=60, long_seeds=first),
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

PROFILES = {p.name: p for p in (SMOKE, SCALE2, SCALE, PAPER)}
