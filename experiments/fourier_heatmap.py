"""Fourier heat maps of trained classifiers: test error under a Fourier-basis perturbation at every frequency.

For each checkpoint, each frequency (i, j) of the image grid and each test image X, the model
classifies clip(X + r s U_ij) (Yin et al. 2019; the basis, the signs and the norm convention are in
``toolkit/fourier.py``); the map of its errors over (i, j), zero frequency at the centre, shows which
frequencies the model is sensitive to. Only the unique half of the frequencies is evaluated (U_ij
and U_-i-j are the same image). ``--norm`` is r on Yin et al.'s scale, images in [0, 1] (4 for
CIFAR-10 in their paper); the models see [-1, 1], so the perturbation they get has norm 2 r per
channel, clipped to [-1, 1].

Every checkpoint is evaluated on the same images (``--images`` of its dataset's test split, drawn
with ``--seed``) under the same signs (drawn per frequency from ``--seed``), so two maps differ by
their models only. Each checkpoint's counts go to ``DIR/fourier_heatmap.parts/LABEL.json``,
rewritten atomically after every frequency: a killed run continues where it stopped, and a finished
part is reused as long as the checkpoint file, ``--norm``, ``--images`` and ``--seed`` are the same.
At the end ``DIR/fourier_heatmap.json`` holds the maps (entry [u][v] of an H x W map is frequency
(u - H // 2, v - W // 2)) and ``DIR/fourier_heatmap.png`` draws them, with each condition minus
``plain`` where a condition is labelled so.

    python -m experiments.fourier_heatmap --checkpoints plain=runs/plain/checkpoint.pt \\
        spectral=runs/spectral/checkpoint.pt --data-dir ../shared/data/cifar10.zip --images 1000 --norm 4 \\
        --output-dir results/scale2
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import torch

from toolkit import cli, fourier
from toolkit.classify import load_classifier
from toolkit.configs import CONFIGS
from toolkit.data import load_images, to_unit_range
from toolkit.io_utils import read_json, write_json
from toolkit.plots import plot_fourier_heatmaps
from toolkit.training import resolve_device, seed_for

RESULT, PARTS = "fourier_heatmap.json", "fourier_heatmap.parts"


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("python -m experiments.fourier_heatmap", __doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", nargs="+", required=True, metavar="LABEL=PATH",
                   help="the classifiers to map, each a label (its panel; 'plain' is the reference of the "
                        "difference panels) and a train script's checkpoint.pt or run folder")
    p.add_argument("--data-dir", default="../shared/data/cifar10.zip", metavar="PATH",
                   help="folder or .zip in ImageFolder layout of the checkpoints' dataset (its test split is used)")
    p.add_argument("--cache-dir", default="cache", metavar="DIR", help="decoded images are cached in <cache-dir>/decoded")
    p.add_argument("--images", type=int, default=1000, metavar="N", help="test images, drawn with --seed")
    p.add_argument("--norm", type=float, default=4.0, metavar="R",
                   help="L2 norm of the perturbation per channel, on images scaled to [0, 1] (Yin et al.: 4 for CIFAR-10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw of the images and of the signs")
    p.add_argument("--batch-size", type=int, default=500, metavar="N", help="images per forward pass")
    p.add_argument("--device", **cli.COMMON_FLAGS["--device"])
    p.add_argument("--output-dir", default="results", metavar="DIR",
                   help=f"writes DIR/{RESULT}, DIR/fourier_heatmap.png and the resumable parts in DIR/{PARTS}")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


def parse_checkpoints(items: list) -> dict:
    """``["plain=a/checkpoint.pt", ...]`` -> ``{"plain": Path("a/checkpoint.pt"), ...}``, labels checked."""
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not re.fullmatch(r"[\w.+-]+", label) or not path:
            raise cli.UserError(f"--checkpoints: expected LABEL=PATH with a label of letters, digits and ._+-, "
                                f"got {item!r}")
        if label in out:
            raise cli.UserError(f"--checkpoints: label {label!r} given twice")
        out[label] = Path(path)
    return out


def _check(args) -> None:
    cli.check_flags(args, [("--images", cli.POSITIVE), ("--norm", cli.POSITIVE), ("--batch-size", cli.POSITIVE)])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path if path.is_file() else path / "checkpoint.pt", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _test_images(args, meta: dict, memo: dict) -> tuple:
    """The ``--images`` test images in [-1, 1] and their labels at the checkpoint's size and colour (decoded once)."""
    key = (meta["dataset"], meta["image_size"], meta["grayscale"])
    if key not in memo:
        split = CONFIGS[meta["dataset"]].eval_split
        s = load_images(meta["dataset"], split, data_dir=args.data_dir, image_size=meta["image_size"],
                        grayscale=meta["grayscale"], subset=args.images, seed=args.seed,
                        cache_dir=str(Path(args.cache_dir) / "decoded"), progress=not args.no_progress)
        memo[key] = (to_unit_range(s.images), s.labels, s.source)
    return memo[key]


@torch.inference_mode()
def count_errors(model, x: torch.Tensor, y: torch.Tensor, batch_size: int, device, u=None, norm: float = 0.0,
                 signs=None) -> int:
    """Misclassified images of ``x`` (perturbed by ``norm`` times ``u`` with ``signs`` when ``u`` is given)."""
    wrong = 0
    for lo in range(0, len(x), batch_size):
        xb = x[lo:lo + batch_size].to(device)
        if u is not None:
            xb = fourier.perturb(xb, u, norm, signs[lo:lo + batch_size])
        wrong += int((model(xb).argmax(1) != y[lo:lo + batch_size].to(device)).sum())
    return wrong


def heatmap(label: str, path: Path, args, out_dir: Path, memo: dict) -> dict:
    """One checkpoint's map and clean error, from its part file where it holds them, else evaluated (resumably)."""
    model, meta, _ = load_classifier(path)
    device = resolve_device(args.device)
    model = model.to(device).eval()
    x, y, source = _test_images(args, meta, memo)
    h, w = x.shape[-2:]
    key = {"checkpoint": str(path), "sha256": _sha256(path), "norm": args.norm, "images": len(x),
           "subset_seed": args.seed, "source": source}
    part_path = out_dir / PARTS / f"{label}.json"
    part = read_json(part_path)
    if part is None or part.get("key") != key:
        part = {"key": key, "clean_errors": count_errors(model, x, y, args.batch_size, device), "errors": {}}
    freqs = fourier.unique_frequencies(h, w)
    todo = [(int(i), int(j)) for i, j in freqs.tolist() if f"{i},{j}" not in part["errors"]]
    from tqdm import tqdm
    for i, j in tqdm(todo, desc=label, unit="freq", disable=args.no_progress, initial=len(freqs) - len(todo),
                     total=len(freqs)):
        u = fourier.basis_images(h, w, torch.tensor([[i, j]]))[0]
        signs = fourier.random_signs(len(x), x.shape[1], torch.Generator().manual_seed(seed_for(args.seed, i, j)))
        # Yin et al.'s r is for images in [0, 1]; the models' [-1, 1] is twice as wide.
        part["errors"][f"{i},{j}"] = count_errors(model, x, y, args.batch_size, device, u, 2 * args.norm, signs)
        write_json(part_path, part)
    write_json(part_path, part)
    counts = torch.tensor([part["errors"][f"{i},{j}"] for i, j in freqs.tolist()], dtype=torch.float64)
    return {"checkpoint": str(path), "error": fourier.centred_map(counts / len(x), freqs, h, w).tolist(),
            "clean_error": part["clean_errors"] / len(x), "images": len(x)}


def main(args) -> int:
    _check(args)
    checkpoints = parse_checkpoints(args.checkpoints)
    out_dir, memo = Path(args.output_dir), {}
    conditions = {label: heatmap(label, path, args, out_dir, memo) for label, path in checkpoints.items()}
    result = {"norm": args.norm, "norm_scale": "L2 per channel on images in [0, 1] (Yin et al. 2019); 2 x norm "
              "on the models' [-1, 1]", "images": next(iter(conditions.values()))["images"], "subset_seed": args.seed,
              "layout": "error[u][v] is frequency (u - H // 2, v - W // 2): zero frequency at the centre",
              "conditions": conditions}
    write_json(out_dir / RESULT, result)
    plot_fourier_heatmaps({k: v["error"] for k, v in conditions.items()}, out_dir / "fourier_heatmap.png",
                          f"test error under Fourier-basis noise of L2 norm {args.norm:g} per channel "
                          f"([0, 1] scale), {args.images} test images")
    for label, c in conditions.items():
        print(f"{label}: clean error {c['clean_error']:.3f}, mean error under Fourier noise "
              f"{torch.tensor(c['error']).mean():.3f}")
    print(f"wrote {out_dir / RESULT} and {out_dir / 'fourier_heatmap.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
