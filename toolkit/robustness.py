"""Corruption robustness: a classifier's accuracy on common corruptions and on spectral TV band edits.

Frequency-targeted augmentations are meant to make a classifier robust, so the test scripts can
measure it next to the clean top-1 (``--robustness``; ``robustness.json`` and ``robustness.png``
beside ``metrics.json``).

Corruptions
-----------
Hendrycks & Dietterich (2019) measure robustness as the accuracy on 15 corruptions c at 5
severities s each, in four families: noise (gaussian_noise, shot_noise, impulse_noise), blur
(defocus_blur, glass_blur, motion_blur, zoom_blur), weather (snow, frost, fog, brightness) and
digital (contrast, elastic_transform, pixelate, jpeg_compression). With ``acc(c, s)`` the top-1
accuracy on the images corrupted by ``c`` at severity ``s``,

    mean corruption accuracy = mean over the included c and s = 1..5 of acc(c, s),
    family mean              = the same mean over the family's included corruptions.

Their mCE divides errors by AlexNet's; there is no reference network here, so the accuracies are
reported raw and runs are compared with each other. The corruptions are those of the
``imagecorruptions`` package (Michaelis et al. 2019, ImageNet-C's code; the maintained fork
``imagecorruptions-imaug``). Its parameters are ImageNet-C's (224 px) at every image size, where
CIFAR-10-C used milder ones tuned for 32 px: accuracies at 32 px here are not comparable with
published CIFAR-10-C numbers, only with each other. The library refuses images under 32 px.

Protocol
--------
* The images: ``images`` images of the evaluation split drawn with the fixed seed
  :data:`SUBSET_SEED` (:func:`data.subset_indices`), whatever a run's ``--seed``, so every run of a
  dataset is measured on the same images. The seed is the one the training scripts' fixed
  ``--eval-subset`` draw uses, so that subset and this one coincide when they have the same size.
* Each image is decoded in RGB at the model's size by :func:`data.load_images` (the resize of the
  training data), corrupted as uint8 RGB, and for a grayscale model then converted to luma by PIL's
  ``"L"`` mode, the conversion ``data.py`` uses. ``data.py`` converts before it resizes, so its clean
  grayscale image may differ from "corrupt nothing, then convert" by a rounding unit; the clean
  accuracy is that of ``data.py``'s own decode, the images the test script's top-1 sees.
* Every random draw of a corruption is seeded by (corruption, severity, position in the subset),
  so the corrupted images are a function of their cache key: two machines, or a resumed build,
  make the same ones.

Band edits
----------
The images the model sees, ``f`` on the [-1, 1] scale, with their two finest spectral TV bands
scaled by ``k`` (:func:`pock.amplify_bands`),

    w = f + sum_{j in {1, 2}} (k - 1) phi_j,      phi_j from pock.spectral(f, N=2, lam=7),

at ``k = 0`` (the bands removed: fine texture and noise gone) and ``k = 3.5`` (amplified, within
the training augmentation's gains [3, 5)); ``k = 1`` gives back ``f``. As the augmentation, ``w`` is
not clipped. The bands come from the band cache (:mod:`toolkit.bandcache`, ``<cache-dir>/bands``),
colour images with vectorial TV as the augmented scripts' default.

Cache and cost
--------------
Corrupted images are generated once per (images: source, split, subset, size and bytes; channels;
library version; this file's code) and kept in ``<cache-dir>/corruptions/<dataset>-<split>-<size>
<g|c>-<key>/``: ``meta.json`` (the key) and one ``<corruption>.npy``, uint8 (5, N, C, H, W), per
finished corruption, each written atomically. A killed build keeps its finished corruptions and the
next run makes only the others; concurrent jobs take turns on a lock file
(:func:`io_utils.exclusive_lock`) and the second finds the first one's files. The seconds a
corruption takes per image and severity were measured on the development machine (2 shared cores,
one thread; :data:`_MS_PER_IMAGE`); ``--corruption-budget`` leaves out a corruption whose estimate
for ``images x 5`` exceeds it, the same choice on every machine and whether cached or not, so that
runs stay comparable, and ``left_out`` in ``robustness.json`` says which and why.

Output
------
``robustness.json`` (accuracies are fractions in [0, 1], as ``metrics.json``'s ``top1``)::

    {"images": 1000, "subset_seed": 0, "split": "test", "image_size": 32, "dataset": "cifar10",
     "clean": <accuracy on the subset>,
     "corruptions": {"gaussian_noise": {"family": "noise", "accuracy": [<s=1>, ..., <s=5>]}, ...},
     "left_out": {"<corruption>": "<why: not requested (--corruptions), or the estimate over the budget>"},
     "mean_corruption_accuracy": <mean over the measured corruptions and severities, null if none>,
     "families": {"noise": <mean, null if none of the family was measured>, "blur": ..., "weather": ...,
                  "digital": ...},
     "bands": {"removed_k0": <accuracy>, "amplified_k3.5": <accuracy>},
     "library": "imagecorruptions-imaug 1.1.5", "seconds": {"generate": ..., "evaluate": ...}}

``seconds.generate`` covers decoding the subset, generating the corruptions not cached yet and
building (or reading) its band cache; ``seconds.evaluate`` the model's passes over every set.

References
----------
D. Hendrycks, T. Dietterich. Benchmarking neural network robustness to common corruptions and
perturbations. ICLR 2019.
C. Michaelis et al. Benchmarking robustness in object detection: autonomous driving when winter is
coming. arXiv:1907.07484, 2019 (the ``imagecorruptions`` package).
G. Gilboa. A total variation spectral framework for scale and texture analysis. SIAM J. Imaging
Sciences 7(4), 2014.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np
import torch

import pock
from toolkit.data import ImageSet, load_images, to_unit_range
from toolkit.errors import UserError
from toolkit.fingerprint import file_digest
from toolkit.io_utils import atomic_write, exclusive_lock, write_json
from toolkit.training import evaluate

__all__ = ["CORRUPTIONS", "FAMILIES", "SEVERITIES", "SUBSET_SEED", "BAND_EDITS", "MIN_SIZE", "add_flags",
           "check_args", "check_model", "parse_corruptions", "estimate_seconds", "select", "corrupt_set",
           "load_or_generate", "band_edits", "summarise", "run", "library"]

# The 15 corruptions of Hendrycks & Dietterich, in their order, with their families.
CORRUPTIONS = {"gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
               "defocus_blur": "blur", "glass_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur",
               "snow": "weather", "frost": "weather", "fog": "weather", "brightness": "weather",
               "contrast": "digital", "elastic_transform": "digital", "pixelate": "digital",
               "jpeg_compression": "digital"}
FAMILIES = ("noise", "blur", "weather", "digital")
SEVERITIES = (1, 2, 3, 4, 5)
SUBSET_SEED = 0
BANDS, LAM = (1, 2), 7.0
BAND_EDITS = {"removed_k0": 0.0, "amplified_k3.5": 3.5}
MIN_SIZE = 32
DEFAULT_IMAGES, DEFAULT_BUDGET_MIN = 1000, 10.0
FORMAT_VERSION = 1

# Milliseconds per image and severity at 32, 64, 128 and 256 px (mean of severities 1..5, 4-12 photographs,
# one thread on the 2-core development machine at a load of about 1, imagecorruptions-imaug 1.1.5; with four jobs on
# its two cores they took 1.5-2 times as long). glass_blur's first call per parameter type compiles its numba kernel
# (0.5 s, up to 4 s on a loaded machine, twice per process): paid once, it is left out.
_SIZES = (32, 64, 128, 256)
_MS_PER_IMAGE = {
    "gaussian_noise": (0.09, 0.29, 0.96, 6.2), "shot_noise": (0.21, 0.68, 2.6, 13.9),
    "impulse_noise": (0.15, 0.23, 0.57, 5.5), "defocus_blur": (0.23, 0.52, 0.70, 10.5),
    "glass_blur": (0.31, 0.75, 2.6, 11.8), "motion_blur": (0.76, 1.13, 2.2, 8.6),
    "zoom_blur": (1.82, 6.4, 23.5, 95.3), "snow": (0.68, 1.24, 2.9, 11.7), "frost": (4.7, 7.0, 4.7, 9.4),
    "fog": (0.41, 0.68, 0.88, 4.3), "brightness": (0.42, 1.13, 7.5, 23.6), "contrast": (0.07, 0.18, 0.58, 2.1),
    "elastic_transform": (0.43, 1.45, 4.4, 15.8), "pixelate": (0.04, 0.07, 0.13, 0.39),
    "jpeg_compression": (0.14, 0.22, 0.26, 0.60)}
# The two corruptions that draw from a generator of their own instead of numpy's global one take its seed.
_SEED_ARGUMENT = ("impulse_noise", "glass_blur")


def library() -> str:
    """The corruption package and its version, e.g. ``"imagecorruptions-imaug 1.1.5"`` (part of the cache key)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"imagecorruptions-imaug {version('imagecorruptions-imaug')}"
    except PackageNotFoundError:
        raise UserError("--robustness needs the package imagecorruptions-imaug; pip install -r requirements.txt") \
            from None


# ------------------------------------------------------------------------------------- flags

def add_flags(parser) -> None:
    """The test scripts' robustness flags, in a group of their own."""
    g = parser.add_argument_group("corruption robustness (Hendrycks & Dietterich 2019) and spectral band edits")
    g.add_argument("--robustness", action="store_true",
                   help="also measure accuracy on 15 corruptions x 5 severities and with spectral TV bands 1-2 "
                        "removed (k=0) and amplified (k=3.5), on a fixed subset of --split; writes robustness.json "
                        "and robustness.png next to metrics.json (slow: corrupted images are generated once per "
                        "dataset and size into <cache-dir>/corruptions, then 78 evaluations of the subset)")
    g.add_argument("--robustness-images", type=int, default=DEFAULT_IMAGES, metavar="N",
                   help=f"images of the robustness subset, drawn with the fixed seed {SUBSET_SEED} whatever --seed, "
                        f"so every run of a dataset sees the same ones")
    g.add_argument("--corruptions", default="all", metavar="LIST|all",
                   help="comma-separated corruptions or families (noise, blur, weather, digital) to measure; "
                        "all: the 15 of Hendrycks & Dietterich")
    g.add_argument("--corruption-budget", type=float, default=DEFAULT_BUDGET_MIN, metavar="MIN",
                   help="leave out a corruption whose estimated generation time for the subset (measured per image "
                        "and size) exceeds MIN minutes; robustness.json lists what was left out and why; inf: none")


def parse_corruptions(text: str) -> list:
    """``"all"``, or comma-separated corruption and family names -> corruption names in the canonical order."""
    items = [v.strip() for v in str(text).split(",") if v.strip()]
    if [v.lower() for v in items] == ["all"]:
        return list(CORRUPTIONS)
    unknown = [v for v in items if v not in CORRUPTIONS and v not in FAMILIES]
    if unknown or not items:
        raise UserError(f"--corruptions: unknown corruption {', '.join(map(repr, unknown or ['']))}; give 'all' or "
                        f"names from {', '.join(CORRUPTIONS)}, or families {', '.join(FAMILIES)}")
    return [c for c, fam in CORRUPTIONS.items() if c in items or fam in items]


def check_args(args) -> None:
    """The robustness flags, before anything is read (checked whether or not --robustness is on)."""
    if args.robustness_images < 1:
        raise UserError(f"--robustness-images must be positive, got {args.robustness_images}")
    if not args.corruption_budget > 0:
        raise UserError(f"--corruption-budget must be positive (minutes per corruption), got {args.corruption_budget}")
    parse_corruptions(args.corruptions)


def check_model(args, meta: dict) -> None:
    """With --robustness: the checkpoint's model must take images the corruption library accepts."""
    if args.robustness and meta["image_size"] < MIN_SIZE:
        raise UserError(f"--robustness needs images of at least {MIN_SIZE} px (the corruption library's minimum); "
                        f"this checkpoint's model takes {meta['image_size']} px")


# ----------------------------------------------------------------------------------- the plan

def estimate_seconds(name: str, images: int, size: int) -> float:
    """Seconds to generate ``images`` images x 5 severities of ``name`` at ``size`` px, from the measured table.

    Log-log interpolation in the pixel count between the measured sizes, the nearest segment's
    slope beyond them.
    """
    logs = np.log(np.square(_SIZES, dtype=float))
    ms = np.log(_MS_PER_IMAGE[name])
    x = math.log(float(size) ** 2)
    i = int(np.clip(np.searchsorted(logs, x) - 1, 0, len(logs) - 2))
    slope = (ms[i + 1] - ms[i]) / (logs[i + 1] - logs[i])
    return images * len(SEVERITIES) * math.exp(ms[i] + slope * (x - logs[i])) / 1000


def select(names: list, images: int, size: int, budget_min: float) -> tuple:
    """``(included, left_out)``: the requested corruptions within the budget, and ``{name: reason}`` for the rest."""
    left_out = {}
    for c in CORRUPTIONS:
        est = estimate_seconds(c, images, size)
        if c not in names:
            left_out[c] = "not requested (--corruptions)"
        elif est > 60 * budget_min:
            took = f"{est / 60:.1f} min" if est >= 60 else f"{est:.1f} s"
            left_out[c] = (f"estimated {took} to generate {images} images x {len(SEVERITIES)} severities "
                           f"at {size} px, over the budget of {budget_min:g} min per corruption (--corruption-budget)")
    return [c for c in names if c not in left_out], left_out


# ----------------------------------------------------------------------------- the corruptions

def _seed(name: str, severity: int, i: int) -> int:
    return zlib.crc32(f"{name}/{severity}/{i}".encode())


def corrupt_set(rgb: np.ndarray, name: str, grayscale: bool, bar=None) -> np.ndarray:
    """Images (N, 3, H, W) uint8 corrupted by ``name`` at every severity: (5, N, C, H, W) uint8, C = 1 if ``grayscale``.

    Seeded per (corruption, severity, image), see the module docstring; numpy's global random
    state, which the library draws from, is restored afterwards.
    """
    from imagecorruptions import corrupt
    from PIL import Image
    n, _, h, w = rgb.shape
    out = np.empty((len(SEVERITIES), n, 1 if grayscale else 3, h, w), dtype=np.uint8)
    state = np.random.get_state()
    try:
        for i in range(n):
            img = np.ascontiguousarray(rgb[i].transpose(1, 2, 0))
            for j, s in enumerate(SEVERITIES):
                seed = _seed(name, s, i)
                np.random.seed(seed)
                x = corrupt(img, corruption_name=name, severity=s, **({"seed": seed} if name in _SEED_ARGUMENT else {}))
                out[j, i] = np.asarray(Image.fromarray(x).convert("L"))[None] if grayscale else x.transpose(2, 0, 1)
            if bar is not None:
                bar.update(1)
    finally:
        np.random.set_state(state)
    return out


def _folder(rgb: ImageSet, grayscale: bool, cache_dir, dataset: str, split: str) -> tuple:
    key = {"format": FORMAT_VERSION, "source": rgb.source, "shape": list(rgb.images.shape),
           "images": hashlib.blake2b(rgb.images.numpy().tobytes(), digest_size=16).hexdigest(),
           "grayscale": bool(grayscale), "severities": list(SEVERITIES), "library": library(),
           "code": file_digest(Path(__file__).resolve())[:16]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    size = rgb.images.shape[-1]
    return Path(cache_dir) / "corruptions" / f"{dataset}-{split}-{size}{'g' if grayscale else 'c'}-{digest}", key


def _finished(path: Path, shape: tuple) -> bool:
    try:
        return tuple(np.load(path, mmap_mode="r").shape) == shape
    except (OSError, ValueError):
        return False  # absent or damaged: made again


def _save(path: Path, arr: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as fh:  # a file object: np.save would add ".npy" to a name
            np.save(fh, arr)
    atomic_write(path, write)


def load_or_generate(rgb: ImageSet, names: list, *, cache_dir, grayscale: bool, dataset: str, split: str,
                     progress: bool = True) -> dict:
    """``{corruption: path of its (5, N, C, H, W) uint8 .npy}``, generating the ones not cached yet."""
    from tqdm import tqdm
    folder, key = _folder(rgb, grayscale, cache_dir, dataset, split)
    n, _, h, w = rgb.images.shape
    shape = (len(SEVERITIES), n, 1 if grayscale else 3, h, w)
    paths = {c: folder / f"{c}.npy" for c in names}
    if all(_finished(p, shape) for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / "build.lock"):
        # Another job may have made some while this one waited for the lock.
        todo = [c for c, p in paths.items() if not _finished(p, shape)]
        write_json(folder / "meta.json", {"key": key})
        bar = tqdm(total=n * len(todo), desc=f"corruptions of {dataset}/{split} at {w} px", unit="img",
                   disable=not progress, mininterval=1.0)
        for c in todo:
            bar.set_postfix_str(c)
            _save(paths[c], corrupt_set(rgb.images.numpy(), c, grayscale, bar))
        bar.close()
    return paths


def band_edits(images: ImageSet, *, cache_dir, vectorial: bool, gains: dict = BAND_EDITS,
               progress: bool = True) -> dict:
    """``{name: w}`` for each ``name: k`` of ``gains``: w = f + sum_{j=1,2} (k - 1) phi_j on the [-1, 1] scale."""
    from toolkit import bandcache
    phi = bandcache.load_or_build(images.images, cache_dir=Path(cache_dir) / "bands", lam=LAM,
                                  components=[f"phi{b}" for b in BANDS], vectorial=vectorial,
                                  data_key=images.source, progress=progress)
    f = to_unit_range(images.images)
    return {name: pock.amplify_bands(f, phi, torch.full((len(f), len(BANDS)), float(k))) for name, k in gains.items()}


# -------------------------------------------------------------------------------- evaluation

def summarise(corruptions: dict) -> dict:
    """Mean corruption accuracy and family means (None for a family with no corruption measured)."""
    def mean(accs):
        return float(np.mean(accs)) if accs else None
    return {"mean_corruption_accuracy": mean([a for v in corruptions.values() for a in v["accuracy"]]),
            "families": {fam: mean([a for v in corruptions.values() if v["family"] == fam for a in v["accuracy"]])
                         for fam in FAMILIES}}


def _subset(args, meta: dict, grayscale: bool) -> ImageSet:
    return load_images(args.dataset, args.split, data_dir=args.data_dir, image_size=meta["image_size"],
                       grayscale=grayscale, subset=args.robustness_images, seed=SUBSET_SEED,
                       download_root=args.download_root, cache_dir=str(Path(args.cache_dir) / "decoded"),
                       workers=args.workers, progress=not args.no_progress)


def _prepare(args, meta: dict) -> tuple:
    """The subset as the model sees it, the cached corruptions' paths, the band edits and what was left out."""
    size, gray = meta["image_size"], bool(meta["grayscale"])
    names, left_out = select(parse_corruptions(args.corruptions), args.robustness_images, size,
                             args.corruption_budget)
    rgb = _subset(args, meta, grayscale=False)
    own = _subset(args, meta, grayscale=True) if gray else rgb
    paths = load_or_generate(rgb, names, cache_dir=args.cache_dir, grayscale=gray, dataset=args.dataset,
                             split=args.split, progress=not args.no_progress)
    edits = band_edits(own, cache_dir=args.cache_dir, vectorial=not gray, progress=not args.no_progress)
    return own, paths, edits, left_out


def run(model, meta: dict, args, device, out_dir) -> dict:
    """Measure ``model`` on the clean subset, its corruptions and band edits; writes robustness.json and .png."""
    from tqdm import tqdm

    from toolkit.plots import plot_robustness
    t0 = time.perf_counter()
    own, paths, edits, left_out = _prepare(args, meta)
    t1 = time.perf_counter()
    bar = tqdm(total=1 + len(paths) * len(SEVERITIES) + len(edits), desc="robustness", unit="set",
               disable=args.no_progress, mininterval=1.0)

    def accuracy(images):
        acc = evaluate(model, images, own.labels, meta["num_classes"], device=device, batch_size=args.batch_size,
                       amp=bool(args.amp and device.type == "cuda"))["acc"]
        bar.update(1)
        return acc

    clean = accuracy(own.images)
    corruptions = {}
    for c, path in paths.items():
        arr = np.load(path, mmap_mode="r")
        corruptions[c] = {"family": CORRUPTIONS[c],
                          "accuracy": [accuracy(torch.from_numpy(np.array(arr[j]))) for j in range(len(SEVERITIES))]}
    # evaluate() maps pixels p to p / 127.5 - 1; handing it (w + 1) * 127.5 in float feeds the model w itself,
    # unclipped and unrounded, as the training augmentation does.
    bands = {name: accuracy((w + 1) * 127.5) for name, w in edits.items()}
    bar.close()
    result = {"images": len(own), "subset_seed": SUBSET_SEED, "split": args.split, "image_size": meta["image_size"],
              "dataset": meta["dataset"], "clean": clean, "corruptions": corruptions, "left_out": left_out,
              **summarise(corruptions), "bands": bands, "library": library(),
              "seconds": {"generate": round(t1 - t0, 3), "evaluate": round(time.perf_counter() - t1, 3)}}
    write_json(Path(out_dir) / "robustness.json", result)
    plot_robustness(result, Path(out_dir) / "robustness.png",
                    f"{meta['dataset']} {args.split}, {len(own)} images at {meta['image_size']} px")
    return result
