"""The GANs' reusable parts: modes, data split, networks, side-effect-free sampling, checkpoints, tables.

``gan.py`` (training) and ``gan_test.py`` (evaluation) are entry points built on this module; see
``docs/gan.md`` for the modes and the metrics.

Data split: the last ``holdout`` images of the split are never trained on (``gan_test.py``
measures against them); training uses the images before them, or ``subset`` of those drawn at
random with the run's seed.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from toolkit import bandcache, checkpoints, data
from toolkit.errors import UserError
from toolkit.gan_models import BandGenerator, Discriminator, Generator

__all__ = ["MODES", "stage_names", "main_stage", "Faces", "load_split", "load_faces", "real_components",
           "model_meta", "build_generator", "build_discriminator", "forward", "sample", "draw",
           "load_checkpoint", "check_compatible", "load_generator", "stage_budgets", "group_summary",
           "summary_table", "markdown_table"]

MODES = {
    "plain": "one DCGAN on the images",
    "components": "one DCGAN per TV-flow state u_0..u_N, trained one after another (the dissertation)",
    "joint": "one DCGAN whose generator outputs the spectral bands and the residual; the image is their sum",
}
WRITER = "gan.py"
# Resuming needs the same networks and the same kind of data: meta key -> the flag that sets it.
RESUME_KEYS = {"mode": "--mode", "image_size": "--image-size", "nz": "--nz", "ngf": "--ngf", "ndf": "--ndf",
               "stages": "--states/--stage-order", "n_bands": "--n-bands", "lam": "--lam"}


def stage_names(mode: str, states: int, stage_order: str) -> list:
    """The generators a run trains, in order: ``["image"]``, or ``["u0", ..., "uN"]`` (components)."""
    if mode == "components":
        names = [f"u{n}" for n in range(states + 1)]
        return names if stage_order == "dissertation" else names[::-1]
    return ["image"]


def main_stage(mode: str) -> str:
    # The image of a components run is the u_0 generator's sample (the recombination telescopes to u_0).
    return "u0" if mode == "components" else "image"


# ------------------------------------------------------------------------------------------- data

@dataclass
class Faces:
    """A run's training data: the images drawn for training and where they came from."""
    images: torch.Tensor      # (n_train, 1, H, W) uint8
    n_images: int             # images in the whole split (the last ``holdout`` of them are held out)
    source: str


def load_split(dataset, split, data_dir, image_size, download_root, cache_dir, progress=True) -> data.ImageSet:
    """The whole split, grayscale, in file order (gan_test.py reads the same split for its held-out faces)."""
    return data.load_images(dataset, split, data_dir=data_dir, image_size=image_size, grayscale=True,
                            download_root=download_root, cache_dir=str(Path(cache_dir) / "decoded"),
                            progress=progress)


def load_faces(args) -> Faces:
    """The training faces: ``--subset`` drawn with ``--seed`` from the images before the last ``--holdout``."""
    if args.holdout < 0 or (args.subset is not None and args.subset < 1):
        raise UserError(f"--holdout must be >= 0 and --subset >= 1, got {args.holdout} and {args.subset}")
    imgs = load_split(args.dataset, args.split, args.data_dir, args.image_size, args.download_root, args.cache_dir,
                      not args.no_progress)
    pool = len(imgs) - args.holdout
    if pool < 1:
        raise UserError(f"{args.data_dir or args.dataset}: {len(imgs)} images leave none to train on after "
                        f"--holdout {args.holdout}; lower --holdout")
    idx = data.subset_indices(pool, args.subset, args.seed)
    if len(idx) < args.batch_size:
        raise UserError(f"only {len(idx)} training images (after --holdout {args.holdout}), fewer than --batch-size "
                        f"{args.batch_size}; lower --batch-size or --holdout")
    return Faces(imgs.images[idx], len(imgs), imgs.source)


def real_components(faces: Faces, args, device) -> torch.Tensor:
    """Cached spectral components of the training faces as float32 (n, K, 1, H, W) in memory.

    components mode: the TV-flow states u_0..u_N; joint mode: phi_1..phi_K and the residual.
    """
    if args.mode == "components":
        comps = [f"u{n}" for n in range(args.states + 1)]
    else:
        comps = [f"phi{k}" for k in range(1, args.n_bands + 1)] + ["residual"]
    cached = bandcache.load_or_build(faces.images, cache_dir=Path(args.cache_dir) / "bands", lam=args.lam,
                                     components=comps, tol=args.tol, device=device,
                                     data_key=f"{faces.source} ({len(faces.images)} drawn with seed {args.seed})",
                                     progress=not args.no_progress)
    # In RAM as float32: a batch is then a plain index, as cheap as for the images.
    return cached.to(torch.float32)


# ------------------------------------------------------------------------------------- networks

def model_meta(args, scales=None) -> dict:
    """What a checkpoint records to rebuild its networks (its ``meta``)."""
    m = {"mode": args.mode, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf, "image_size": args.image_size, "nc": 1,
         "stages": stage_names(args.mode, args.states, args.stage_order)}
    if args.mode == "joint":
        m["n_bands"] = args.n_bands
        m["scales"] = [float(s) for s in scales] if scales is not None else None
    if args.mode in ("joint", "components"):
        m["lam"] = args.lam
    return m


def build_generator(m: dict) -> nn.Module:
    """The generator that ``m`` (:func:`model_meta`, a checkpoint's ``meta``) describes."""
    if m["mode"] == "joint":
        return BandGenerator(torch.tensor(m["scales"]), m["nz"], m["ngf"], m["nc"], m["image_size"])
    return Generator(m["nz"], m["ngf"], m["nc"], m["image_size"])


def build_discriminator(m: dict) -> nn.Module:
    nc = m["nc"] * (1 + m["n_bands"]) if m["mode"] == "joint" else m["nc"]
    return Discriminator(m["ndf"], nc, m["image_size"])


def forward(G: nn.Module, z: torch.Tensor) -> tuple:
    """Images (B, C, H, W) and, for a band generator, the components (else None), as ``G`` is (training)."""
    out = G(z)
    return out if isinstance(out, tuple) else (out, None)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def sample(G: nn.Module, z: torch.Tensor) -> tuple:
    """Like :func:`forward`, but leaves ``G`` exactly as it was (mode, weights and buffers).

    Batch norm normalises with the statistics of the batch ``z``, as in the DCGAN reference and as
    in training: early in training the running averages lag far behind (they start at mean 0,
    variance 1 while the activations are O(0.02)), and eval mode then yields flat grey images. The
    running averages are not updated, so drawing samples never changes the model.
    """
    norms = [m for m in G.modules() if isinstance(m, _BATCH_NORMS)]
    was_training, tracked = G.training, [m.track_running_stats for m in norms]
    G.train()
    for m in norms:
        m.track_running_stats = False   # batch statistics, buffers neither read nor written
    try:
        return forward(G, z)
    finally:
        for m, t in zip(norms, tracked):
            m.track_running_stats = t
        G.train(was_training)


@torch.no_grad()
def draw(G, n: int, nz: int, device, seed: int, batch_size: int) -> tuple:
    """n samples (images clamped to [-1, 1]) and, for a band generator, its components and the largest
    |image - sum of components| (0 up to float rounding: the joint image *is* that sum)."""
    gen = torch.Generator().manual_seed(seed)
    imgs, comps, err = [], [], 0.0
    # Near-equal batches: batch norm runs on batch statistics, which a tiny last batch would distort.
    n_batches = -(-n // batch_size)
    for size in [n // n_batches + (i < n % n_batches) for i in range(n_batches)]:
        z = torch.randn(size, nz, 1, 1, generator=gen).to(device)
        img, cmp = sample(G, z)
        if cmp is not None:
            err = max(err, float((img - cmp.sum(1)).abs().max()))
            comps.append(cmp.float().cpu())
        imgs.append(img.float().clamp(-1, 1).cpu())
    return torch.cat(imgs), (torch.cat(comps) if comps else None), err


# -------------------------------------------------------------------------------- checkpoints

def load_checkpoint(path) -> dict:
    """A gan.py checkpoint (``path`` is the file or its run folder); one-line error otherwise."""
    ckpt = checkpoints.load(path, "gan", WRITER)
    if ckpt["meta"]["mode"] not in MODES:
        raise checkpoints.CheckpointError(f"{path}: checkpoint of unknown mode {ckpt['meta']['mode']!r}; "
                                          f"expected one of {', '.join(MODES)}")
    return ckpt


def check_compatible(ckpt: dict, m: dict, path) -> None:
    checkpoints.check_compatible(ckpt["meta"], m, RESUME_KEYS, path)


def load_generator(ckpt: dict, stage: str, device, path) -> nn.Module:
    if stage not in ckpt["generators"]:
        raise checkpoints.CheckpointError(f"{path}: the {stage} generator was never trained (stages done: "
                                          f"{', '.join(ckpt['generators']) or 'none'}); train the run further")
    G = build_generator(ckpt["meta"])
    G.load_state_dict(ckpt["generators"][stage])
    return G.to(device)


def stage_budgets(max_steps: Optional[int], n_stages: int) -> list:
    """Generator updates per stage: ``max_steps`` split evenly (None: no limit)."""
    if max_steps is None:
        return [None] * n_stages
    return [max_steps * (s + 1) // n_stages - max_steps * s // n_stages for s in range(n_stages)]


# ------------------------------------------------------------------------------------- tables

def group_summary(results: dict) -> dict:
    """Mean and sample standard deviation over the runs of each group (mode, stage order) that has several
    runs (e.g. seeds): ``{group: {"runs": n, metric: [mean, std]}}``."""
    groups: dict = {}
    for r in results.values():
        if "group" in r:
            groups.setdefault(r["group"], []).append(r)
    out = {}
    for g, rs in groups.items():
        if len(rs) < 2:
            continue
        vals = {"swd_avg_x1e3": [r["swd_x1e3"]["avg"] for r in rs],
                "spectrum_distance": [r["spectrum_distance"] for r in rs]}
        if all("fid" in r for r in rs):
            vals["fid"] = [r["fid"] for r in rs]
        out[g] = {"runs": len(rs), **{k: [statistics.mean(v), statistics.stdev(v)] for k, v in vals.items()}}
    return out


def summary_table(summary: dict) -> str:
    lines = ["| group | runs | SWD avg | spectrum dist | FID |", "|---|---:|---:|---:|---:|"]
    for g, v in summary.items():
        fid = f"{v['fid'][0]:.2f} ± {v['fid'][1]:.2f}" if "fid" in v else "–"
        lines.append(f"| {g} | {v['runs']} | {v['swd_avg_x1e3'][0]:.1f} ± {v['swd_avg_x1e3'][1]:.1f} | "
                     f"{v['spectrum_distance'][0]:.3f} ± {v['spectrum_distance'][1]:.3f} | {fid} |")
    return "\n".join(lines)


def _fmt(v, digits=1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown_table(results: dict, *, with_fid: bool) -> str:
    """One row per set of gan_test.py's ``metrics.json`` results: SWD per level, spectrum distance (FID, KID)."""
    levels = [k for k in next(iter(results.values()))["swd_x1e3"] if k != "avg"]
    head = ["set", "group", "G updates"] + [f"SWD {k}" for k in levels] + ["SWD avg", "spectrum dist"]
    if with_fid:
        head += ["FID", "KID x1e3"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for name, r in results.items():
        row = [name, r.get("group", "real"), str(r.get("generator_updates", "–"))]
        row += [_fmt(r["swd_x1e3"][k]) for k in levels] + [_fmt(r["swd_x1e3"]["avg"]), _fmt(r["spectrum_distance"], 3)]
        if with_fid:
            row += [_fmt(r.get("fid"), 2), _fmt(r.get("kid_x1e3"), 2)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
