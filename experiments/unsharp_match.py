"""Match the unsharp-mask control to the spectral augmentation's perturbation size, on real training images.

The spectral condition replaces an image ``f`` by ``w = f + (k_1 - 1) phi_1 + (k_2 - 1) phi_2`` (bands 1-2
of the TV flow at ``lam``, integer gains k in {3, 4} per band and image). The control replaces it by
``w = f + a (f - G_s * f)`` (``toolkit/unsharp.py``). For each dataset, on ``--images`` training images at the
sweep's image size (grayscale, the [-1, 1] scale the networks see), this measures

* the spectral perturbation's mean L2 norm per augmented image, ``E_f E_k ||w - f||``, exactly over the
  four equally likely gain pairs;
* the high-pass's mean norm ``E_f ||f - G_s * f||`` at a fixed ``s`` (``--sigma``);

and chooses the amount range ``[a_lo, a_hi)``, ``a_hi / a_lo`` the ratio of the gains' range (5 / 3), so
that ``E_a E_f ||a (f - G_s * f)|| = E[a] E_f ||f - G_s * f||`` equals the spectral mean (``a`` is drawn
independently of the image, so the expectation factorises). Only augmented images count: both
conditions replace an image with the same probability, so matching per augmented image matches the
whole. The amounts are rounded to 3 decimals, as the sweep passes them, and the matched norm is
recomputed with the rounded values. ``experiments/profiles.py`` reads the result.

    python -m experiments.unsharp_match --data-root ../shared/data --output-dir results
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
from toolkit.io_utils import write_json

__all__ = ["measure", "get_args_parser", "main", "SIZES", "GAINS"]

# The sweep's image size per dataset (the scale2 profile); the archives cap Imagenette/Flowers102 at 128 px.
SIZES = {"cifar10": 32, "imagenette": 64, "flowers102": 64}
GAINS, BANDS, LAM = (3, 5), (1, 2), 7.0


def _spectral_norms(f: torch.Tensor, lam: float, tol: float) -> torch.Tensor:
    """Per image, the mean of ||sum_j (k_j - 1) phi_j||_2 over the equally likely integer gain pairs."""
    dec = pock.spectral(f, N=max(BANDS), lam=lam, tol=tol)
    phi = dec.phi[:, [b - 1 for b in BANDS]].double()
    pairs = list(itertools.product(range(*GAINS), repeat=len(BANDS)))
    norms = [sum((k - 1) * phi[:, j] for j, k in enumerate(ks)).flatten(1).norm(dim=1) for ks in pairs]
    return torch.stack(norms).mean(0)


def measure(name: str, archive: Path, *, images: int, sigma: float, seed: int = 0, tol: Optional[float] = None,
            batch_size: int = 128) -> dict:
    """The matching for one dataset (see the module docstring); ``tol`` goes to :func:`pock.spectral`."""
    split, size = CONFIGS[name].train_split, SIZES[name]
    imgs = data.load_images(name, split, data_dir=str(archive), image_size=size, grayscale=True, subset=images,
                            seed=seed, cache_dir=None, progress=False)
    spec, high = [], []
    for i in range(0, len(imgs), batch_size):
        f = data.to_unit_range(imgs.images[i:i + batch_size])
        spec.append(_spectral_norms(f, LAM, tol))
        high.append(unsharp.high_pass(f.double(), sigma).flatten(1).norm(dim=1))
    spec_mean, high_mean = float(torch.cat(spec).mean()), float(torch.cat(high).mean())
    ratio = GAINS[1] / GAINS[0]
    lo = 2 * spec_mean / (high_mean * (1 + ratio))
    lo, hi = round(lo, 3), round(lo * ratio, 3)
    # A draw as the training runs make it, as a check of the expectation (same images, one amount each).
    drawn = unsharp.random_amounts(len(imgs), (lo, hi), generator=torch.Generator().manual_seed(seed))
    pixels = size * size
    return {"archive": Path(archive).name, "sha256": hashlib.sha256(Path(archive).read_bytes()).hexdigest(),
            "split": split, "image_size": size, "images": len(imgs),
            "subset_seed": seed, "spectral_norm": spec_mean, "high_pass_norm": high_mean, "amount": [lo, hi],
            "unsharp_norm": (lo + hi) / 2 * high_mean,
            "unsharp_norm_drawn": float((drawn * torch.cat(high)).mean()),
            "spectral_rms_per_pixel": spec_mean / pixels ** 0.5,
            "unsharp_rms_per_pixel": (lo + hi) / 2 * high_mean / pixels ** 0.5}


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
    p.add_argument("--tol", **cli.TOL_FLAG)
    return p


def main(args) -> dict:
    # The archives are named with their sha256 below; their folder is this machine's business.
    out = {"command": " ".join(["python -m experiments.unsharp_match"] + [a.replace(args.data_root, "<data-root>")
                                                                            for a in sys.argv[1:]]),
           "spectral": {"bands": list(BANDS), "gains": list(GAINS), "lam": LAM, "tol": args.tol},
           "sigma": args.sigma, "amount_ratio": GAINS[1] / GAINS[0], "datasets": {}}
    for name in args.datasets:
        res = measure(name, Path(args.data_root) / f"{name}.zip", images=args.images, sigma=args.sigma,
                      seed=args.seed, tol=args.tol)
        out["datasets"][name] = res
        print(f"{name}: spectral ||w - f|| {res['spectral_norm']:.3f}, high-pass {res['high_pass_norm']:.3f} -> "
              f"a in [{res['amount'][0]}, {res['amount'][1]}), unsharp ||w - f|| {res['unsharp_norm']:.3f} "
              f"(drawn: {res['unsharp_norm_drawn']:.3f})")
    write_json(Path(args.output_dir) / "unsharp_matching.json", out)
    return out


if __name__ == "__main__":
    cli.run(main, get_args_parser())
