"""Match the unsharp-mask control to the spectral augmentation's perturbation size, on real training images.

The spectral augmentation turns an image ``f`` into ``w = f + (k_1 - 1) phi_1 + (k_2 - 1) phi_2`` (bands 1-2
of the TV flow at ``lam``, integer gains k in {3, 4}). The control turns it into ``w = f + a (f - G_s * f)``
(``toolkit/unsharp.py``). For each dataset, on ``--images`` training images at an image size (``--image-size``;
by default the scale2 sweep's, :data:`SIZES`; grayscale, the [-1, 1] scale the networks see), this measures

* the spectral perturbation's L2 norm ``||w - f||`` per image for each of the four equally likely gain pairs;
* the high-pass's mean norm ``H = E_f ||f - G_s * f||`` at a fixed ``s`` (``--sigma``);

and chooses the amount range ``[a_lo, a_hi)`` according to how the runs draw their gains and amounts:

* one per image (the replace conditions, ``--spectral-mode replace``): ``a_hi / a_lo`` is the ratio of the
  gains' range (5 / 3), and ``E_a E_f ||a (f - G_s * f)|| = E[a] H`` equals the spectral mean
  ``E_f E_k ||w - f||`` (``a`` is drawn independently of the image, so the expectation factorises). Only
  augmented images count: both conditions replace an image with the same probability, so matching per
  augmented image matches the whole.
* one per batch (``--per-batch``; the dissertation's protocol, ``--spectral-mode concat --per-batch-gains``,
  and its control ``--unsharp-mode concat --per-batch-amounts``): a batch's copies then share one gain pair,
  so the size of the perturbation a step trains on varies from batch to batch, and what is matched is that
  distribution over batches: the mean size of a batch's copies, ``m_k = E_f ||w_k - f||`` for the gain pair
  ``k`` the batch drew (four equally likely values), against ``a H`` for the batch's amount ``a``. A uniform
  ``a`` cannot take four values, so the two distributions are matched in mean and standard deviation,
  ``E[a] H = mean_k m_k`` and ``sd(a) H = sd_k m_k``: ``a_lo, a_hi = (mean_k m_k -/+ sqrt(3) sd_k m_k) / H``.
  Within a batch, both perturbations vary from image to image with the image only.

The amounts are rounded to 3 decimals, as the sweep passes them, and the matched norm is recomputed with
the rounded values. ``--output-dir``/unsharp_matching.json keeps what earlier runs measured: ``datasets``
holds the per-image matches at the scale2 sizes (the scale2 profile reads them), and every other match goes
to ``sizes[<dataset>][<size>]["per-image" or "per-batch"]`` with its own settings and command.
``experiments/profiles.py`` reads the result.

    python -m experiments.unsharp_match --data-root ../shared/data --output-dir results
    python -m experiments.unsharp_match --datasets imagenette --image-size 128 --per-batch   # robust128
    python -m experiments.unsharp_match --datasets cifar10 --per-batch                       # robust128
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from pathlib import Path
from typing import Optional

import torch

import pock
from toolkit import cli, data, unsharp
from toolkit.configs import CONFIGS
from toolkit.io_utils import read_json, write_json

__all__ = ["measure", "amount_range", "get_args_parser", "main", "SIZES", "GAINS"]

# The sweep's image size per dataset (the scale2 profile); the archives cap Imagenette/Flowers102 at 128 px.
SIZES = {"cifar10": 32, "imagenette": 64, "flowers102": 64}
GAINS, BANDS, LAM = (3, 5), (1, 2), 7.0


PAIRS = list(itertools.product(range(*GAINS), repeat=len(BANDS)))
BATCHES = 1000


def _spectral_norms(f: torch.Tensor, lam: float, tol: float) -> torch.Tensor:
    """||sum_j (k_j - 1) phi_j||_2 per gain pair (rows, :data:`PAIRS`) and image (columns)."""
    dec = pock.spectral(f, N=max(BANDS), lam=lam, tol=tol)
    phi = dec.phi[:, [b - 1 for b in BANDS]].double()
    return torch.stack([sum((k - 1) * phi[:, j] for j, k in enumerate(ks)).flatten(1).norm(dim=1) for ks in PAIRS])


def amount_range(spec: torch.Tensor, high_mean: float, per_batch: bool) -> tuple:
    """``(a_lo, a_hi)`` matching the spectral sizes ``spec`` (gain pairs x images) for amounts drawn per image or
    per batch (see the module docstring)."""
    mean = float(spec.mean(0).mean())
    if per_batch:
        sd = float(spec.mean(1).std(unbiased=False))      # the four equally likely batch means, not a sample
        return (mean - 3 ** 0.5 * sd) / high_mean, (mean + 3 ** 0.5 * sd) / high_mean
    ratio = GAINS[1] / GAINS[0]
    lo = 2 * mean / (high_mean * (1 + ratio))
    return lo, lo * ratio


def _drawn(high: torch.Tensor, amount: tuple, per_batch: bool, batch_size: int, seed: int) -> dict:
    """Sizes drawn as the training runs draw them, as a check of the expectations: one amount per measured image;
    or :data:`BATCHES` batches of ``batch_size`` of the measured images, one amount each (mean and sd over them)."""
    g = torch.Generator().manual_seed(seed)
    if not per_batch:
        return {"unsharp_norm_drawn": float((unsharp.random_amounts(len(high), amount, generator=g) * high).mean())}
    batches = torch.randint(len(high), (BATCHES, batch_size), generator=g)
    sizes = unsharp.random_amounts(BATCHES, amount, generator=g) * high[batches].mean(1)
    return {"unsharp_norm_drawn": float(sizes.mean()), "unsharp_norm_sd_drawn": float(sizes.std())}


def measure(name: str, archive: Path, *, images: int, sigma: float, seed: int = 0, tol: Optional[float] = None,
            batch_size: int = 128, size: Optional[int] = None, per_batch: bool = False) -> dict:
    """The matching for one dataset at ``size`` px (None: :data:`SIZES`), amounts drawn per image or ``per_batch``
    of ``batch_size`` (see the module docstring); ``tol`` goes to :func:`pock.spectral`."""
    split, size = CONFIGS[name].train_split, size or SIZES[name]
    imgs = data.load_images(name, split, data_dir=str(archive), image_size=size, grayscale=True, subset=images,
                            seed=seed, cache_dir=None, progress=False)
    spec, high = [], []
    for i in range(0, len(imgs), batch_size):
        f = data.to_unit_range(imgs.images[i:i + batch_size])
        spec.append(_spectral_norms(f, LAM, tol))
        high.append(unsharp.high_pass(f.double(), sigma).flatten(1).norm(dim=1))
    spec, high = torch.cat(spec, dim=1), torch.cat(high)
    spec_mean, high_mean = float(spec.mean(0).mean()), float(high.mean())
    lo, hi = (round(v, 3) for v in amount_range(spec, high_mean, per_batch))
    pixels = size * size
    out = {"archive": Path(archive).name, "sha256": hashlib.sha256(Path(archive).read_bytes()).hexdigest(),
           "split": split, "image_size": size, "images": len(imgs),
           "subset_seed": seed, "spectral_norm": spec_mean, "high_pass_norm": high_mean, "amount": [lo, hi],
           "unsharp_norm": (lo + hi) / 2 * high_mean, **_drawn(high, (lo, hi), per_batch, batch_size, seed),
           "spectral_rms_per_pixel": spec_mean / pixels ** 0.5,
           "unsharp_rms_per_pixel": (lo + hi) / 2 * high_mean / pixels ** 0.5}
    if per_batch:
        batch_means = spec.mean(1)
        out.update(batch_size=batch_size, spectral_batch_norms={f"{k1},{k2}": float(m) for (k1, k2), m in
                                                                zip(PAIRS, batch_means)},
                   spectral_norm_sd=float(batch_means.std(unbiased=False)),
                   unsharp_norm_sd=(hi - lo) / 12 ** 0.5 * high_mean)
    return out


def dataset_list(text: str) -> list:
    """An argparse type: ``"cifar10,imagenette"`` -> ``["cifar10", "imagenette"]``, each one of :data:`SIZES`."""
    names = [v for v in str(text).replace(" ", "").split(",") if v]
    unknown = [v for v in names if v not in SIZES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated names from {', '.join(SIZES)}, got {text!r}")
    return names


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("python -m experiments.unsharp_match", __doc__.split("\n")[0])
    p.add_argument("--data-root", default="../shared/data", metavar="DIR",
                   help="folder holding the archives cifar10.zip, imagenette.zip, flowers102.zip")
    cli.add_output_dir(p, "results", "DIR/unsharp_matching.json", "experiments/profiles.py reads results/unsharp_matching.json")
    p.add_argument("--images", type=int, default=512, metavar="N",
                   help="training images per dataset, drawn with --seed")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw of the training images")
    p.add_argument("--sigma", type=float, default=1.0, metavar="S",
                   help="standard deviation s of the Gaussian, in pixels: bands 1-2 at lam 7 hold the finest, "
                        "pixel-scale structures, and s = 1 px is the narrowest Gaussian that is not almost a delta")
    p.add_argument("--datasets", type=dataset_list, default=dataset_list(",".join(SIZES)), metavar="NAME,...",
                   help="comma-separated datasets to measure")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="side of the square images in pixels; None: each dataset's size in the scale2 sweep ("
                        + ", ".join(f"{k} {v}" for k, v in SIZES.items()) + ")")
    p.add_argument("--per-batch", action="store_true",
                   help="match amounts drawn once per batch to gains drawn once per batch (the dissertation's "
                        "protocol, --spectral-mode concat --per-batch-gains), in mean and spread over batches")
    p.add_argument("--tol", **cli.TOL_FLAG)
    return p


def _store(out: dict, name: str, res: dict, per_batch: bool, settings: dict, command: str) -> dict:
    """``out`` with ``res`` in its place (see the module docstring); returns the (possibly new) dict."""
    if per_batch or res["image_size"] != SIZES[name]:
        entry = {"command": command, "spectral": settings["spectral"], "sigma": settings["sigma"], **res}
        out.setdefault("sizes", {}).setdefault(name, {}).setdefault(str(res["image_size"]), {})[
            "per-batch" if per_batch else "per-image"] = entry
        return out
    if {k: out.get(k) for k in settings} != settings:
        # Matches made with other settings do not belong under these top-level settings: start ``datasets`` anew.
        out = {"command": command, **settings, "datasets": {}, **{k: v for k, v in out.items() if k == "sizes"}}
    out["datasets"][name] = res
    return out


def main(args) -> dict:
    P, P0 = cli.POSITIVE, cli.POSITIVE_OR_NONE
    cli.check_flags(args, [("--images", P), ("--sigma", P), ("--image-size", P0), ("--tol", P0)])
    path = Path(args.output_dir) / "unsharp_matching.json"
    # The archives are named with their sha256 below; their folder is this machine's business.
    command = " ".join(["python -m experiments.unsharp_match"] + [a.replace(args.data_root, "<data-root>")
                                                                  for a in sys.argv[1:]])
    settings = {"spectral": {"bands": list(BANDS), "gains": list(GAINS), "lam": LAM, "tol": args.tol},
                "sigma": args.sigma, "amount_ratio": GAINS[1] / GAINS[0]}
    out = read_json(path) or {}
    for name in args.datasets:
        res = measure(name, Path(args.data_root) / f"{name}.zip", images=args.images, sigma=args.sigma,
                      seed=args.seed, tol=args.tol, size=args.image_size, per_batch=args.per_batch)
        out = _store(out, name, res, args.per_batch, settings, command)
        spread = (f" ± {res['spectral_norm_sd']:.3f} over batches" if args.per_batch else "")
        print(f"{name} at {res['image_size']} px: spectral ||w - f|| {res['spectral_norm']:.3f}{spread}, high-pass "
              f"{res['high_pass_norm']:.3f} -> a in [{res['amount'][0]}, {res['amount'][1]}), unsharp ||w - f|| "
              f"{res['unsharp_norm']:.3f} (drawn: {res['unsharp_norm_drawn']:.3f})")
    write_json(path, out)
    return out


if __name__ == "__main__":
    cli.run(main, get_args_parser())
