"""The example grid: what each condition does to a training image, at 32 and 64 px, with the perturbation size.

For one training image of CIFAR-10 (32 px) and of Imagenette (64 px), gray as the sweep trains them:
the original f, its TV bands phi_1 and phi_2 (lam 7), the spectral augmentation at each integer gain
of the main condition, the gain ablation's ranges (at the middle of each range), and the matched
unsharp-mask control (at the middle of its amount range, ``results/unsharp_matching.json``). Every
panel is titled with ``||w - f||_2`` on the [-1, 1] scale. Images are shown clipped to [-1, 1], the
bands on a symmetric scale of their own.

    python -m experiments.examples --data-root ../shared/data --output-dir results/examples
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch

import pock
from toolkit import cli, data, unsharp
from toolkit.io_utils import atomic_write_bytes

from .profiles import MATCHING
from .unsharp_match import SIZES

__all__ = ["panels", "get_args_parser", "main"]

DATASETS = ("cifar10", "imagenette")


def panels(f: torch.Tensor, amount: tuple, sigma: float) -> list:
    """``[(title, image, is_band)]`` for one gray image ``f`` (1, 1, H, W) in [-1, 1]."""
    dec = pock.spectral(f, N=2, lam=7.0)
    phi1, phi2 = dec.phi[:, 0], dec.phi[:, 1]
    out = [("original f", f, False), ("phi_1", phi1, True), ("phi_2", phi2, True)]
    for label, k in (("k = 3", 3.0), ("k = 4", 4.0), ("ablation k = 2\n(range [1.5, 2.5))", 2.0),
                     ("ablation k = 0.5\n(range [0, 1))", 0.5)):
        w = f + (k - 1) * (phi1 + phi2)
        out.append((f"spectral {label}", w, False))
    a = sum(amount) / 2
    out.append((f"unsharp a = {a:.2f}\n(s = {sigma:g} px)", unsharp.unsharp_mask(f, a, sigma), False))
    return out


def _figure(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with plt.style.context("default"):
        n = len(rows[0][1])
        fig, axes = plt.subplots(len(rows), n, figsize=(1.75 * n, 2.6 * len(rows)), squeeze=False)
        for r, (name, ps) in enumerate(rows):
            f = ps[0][1]
            for c, (title, img, band) in enumerate(ps):
                ax = axes[r][c]
                x = img[0, 0].numpy()
                if band:
                    m = float(abs(x).max()) or 1.0
                    ax.imshow(x, cmap="RdBu_r", vmin=-m, vmax=m)
                    size = f"‖phi‖ = {float(img.norm()):.2f}"
                else:
                    ax.imshow(x.clip(-1, 1), cmap="gray", vmin=-1, vmax=1)
                    size = f"{name}" if c == 0 else f"‖w - f‖ = {float((img - f).norm()):.2f}"
                ax.set_title(f"{title}\n{size}", fontsize=6.5)
                ax.axis("off")
        fig.suptitle("spectral TV augmentation w = f + (k - 1)(phi_1 + phi_2), its ablation ranges and the matched "
                     "unsharp mask w = f + a (f - G_s * f)", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("python -m experiments.examples", __doc__.split("\n")[0])
    p.add_argument("--data-root", default="../shared/data", metavar="DIR",
                   help="folder holding the archives cifar10.zip and imagenette.zip")
    cli.add_output_dir(p, "results/examples", "DIR/example_grid.png", "the report links results/examples/example_grid.png")
    p.add_argument("--seed", type=int, default=1, help="seed of the draw of the one training image per dataset")
    return p


def main(args) -> Path:
    path = Path(args.output_dir) / "example_grid.png"
    matching = json.loads(MATCHING.read_text())
    rows = []
    for name in DATASETS:
        imgs = data.load_images(name, "train", data_dir=str(Path(args.data_root) / f"{name}.zip"),
                                image_size=SIZES[name], grayscale=True, subset=1, seed=args.seed, cache_dir=None,
                                progress=False)
        f = data.to_unit_range(imgs.images)
        rows.append((f"{name}, {SIZES[name]} px", panels(f, tuple(matching["datasets"][name]["amount"]),
                                                          matching["sigma"])))
    _figure(rows, path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    cli.run(main, get_args_parser())
