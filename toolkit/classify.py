"""Train and test the dissertation's classifiers; the nine top-level scripts are thin entry points.

Each script names its entry of :data:`configs.CONFIGS` (the per-dataset defaults), builds its
parser with :func:`get_train_parser` or :func:`get_test_parser` and runs :func:`train` or
:func:`test` through :func:`cli.run`. A training run:

1. decodes its splits once into memory (``data.load_images``, cached in ``--cache-dir``/decoded);
2. for the spectral scripts, decomposes every training image once into the bands it amplifies
   (``bandcache.load_or_build``, cached in ``--cache-dir``/bands), unless ``--no-cache`` asks for
   the dissertation's per-batch decomposition (``pock.spectral_augment``);
3. trains ResNet-18 with Adam on batches indexed out of memory; the spectral scripts train on each
   batch plus its augmented copy (``--spectral-mode concat``, the dissertation) or replace images
   by their augmented version with probability ``--spectral-prob`` (``replace``); the unsharp-mask
   control (``--unsharp-amount``) does either as well (``--unsharp-mode``);
4. evaluates on ``--eval-split`` after every epoch and writes into ``--output-dir``: ``args.json``,
   ``checkpoint.pt`` every epoch (atomically), ``metrics.jsonl`` (one line per epoch: train loss
   and accuracy, test loss and accuracy, training images/s), ``curves.png`` and at the end
   ``results.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import torch

import pock
from toolkit import checkpoints, cli, unsharp
from toolkit.configs import CONFIGS, Config
from toolkit.data import DataError, load_images
from toolkit.errors import UserError
from toolkit.io_utils import atomic_write_text, git_state, write_json, write_jsonl
from toolkit.models import classifier_from_meta, model_meta
from toolkit.plots import plot_confusion, plot_curves
from toolkit.training import (Dist, cleanup_distributed, epoch_batches, evaluate, init_distributed, random_crop_flip,
                              resolve_device, seed_for, train_one_epoch)

__all__ = ["get_train_parser", "get_test_parser", "train", "test", "load_classifier", "parse_gains", "parse_range",
           "Augmenter"]

# Checkpoint meta that must match for --resume, and the flag that sets each.
RESUME_KEYS = {"dataset": "dataset", "arch": "--arch", "num_classes": "number of classes",
               "in_channels": "input channels (--color)", "hidden": "--hidden", "image_size": "--image-size"}
WRITER = "a train script"


# ------------------------------------------------------------------------------------- flags

def parse_gains(text: str) -> tuple:
    """``"3,5"`` -> ``(3, 5)``, integer gains; ``"1.5,2.5"`` -> ``(1.5, 2.5)``, a continuous draw.

    A value written with a decimal point is a float, otherwise an int; :func:`pock.random_gains`
    draws integers from ``[lo, hi)`` when both are ints and uniform reals otherwise.
    """
    items = [v for v in str(text).replace(" ", "").split(",") if v]
    try:
        gains = tuple(float(v) if "." in v else int(v) for v in items)
    except ValueError:
        gains = ()
    if len(gains) != 2 or not 0 <= gains[0] < gains[1]:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 <= LO < HI (integers, e.g. 3,5, for the "
                                         f"dissertation's integer draw; 1.5,2.5 for a uniform one), got {text!r}")
    return gains


def parse_range(text: str) -> tuple:
    """``"0.5,1.2"`` -> ``(0.5, 1.2)``: a real interval [LO, HI) with 0 <= LO < HI."""
    try:
        lo, hi = (float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        lo, hi = 0.0, -1.0
    if not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 <= LO < HI, e.g. 0.5,1.2, got {text!r}")
    return lo, hi


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--download-root", default="./data", metavar="DIR",
                   help="where torchvision downloads the dataset when --data-dir is not given")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="threads decoding images (0: the main thread; training reads from memory)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    cli.renamed_flag(p, "--decode-cache-dir", "--cache-dir", "decoded images go to <cache-dir>/decoded")
    cli.removed_flag(p, "--data-seed", "the --subset draw follows --seed")


def get_train_parser(entry: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The training CLI with the defaults of ``configs.CONFIGS[entry]``."""
    c: Config = CONFIGS[entry]
    p = cli.make_parser(prog, f"Train {c.arch} on grayscale {c.dataset}"
                        + (" with spectral TV augmentation" if c.spectral else "") + " (dissertation defaults).")
    p.set_defaults(dataset=c.dataset, config=entry, script=p.prog)
    cli.add_common_flags(p, f"../shared/data/{c.dataset}.zip", output_dir=f"runs/{entry}", subset=c.subset)
    _data_flags(p)
    p.add_argument("--train-split", default=c.train_split, help="split (folder) to train on")
    p.add_argument("--eval-split", default=c.eval_split,
                   help="split evaluated after every epoch ('none': no evaluation)")
    p.add_argument("--eval-subset", type=int, default=None, metavar="N",
                   help="evaluate on N images (one draw, the same for every --seed); None: all")
    p.add_argument("--eval-batch-size", type=int, default=256, metavar="N", help="images per evaluation batch")
    p.add_argument("--epochs", type=int, default=c.epochs, metavar="N", help="passes over the training images")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="stop after N optimiser steps in all; None: after --epochs")
    p.add_argument("--batch-size", type=int, default=c.batch_size, metavar="N", help="images per step per process")
    p.add_argument("--lr", type=float, default=c.lr, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam's L2 weight decay")
    p.add_argument("--image-size", type=int, default=c.image_size, metavar="PX",
                   help="side of the square training images in pixels (resized once, when decoded)")
    p.add_argument("--color", action="store_true",
                   help="RGB input instead of grayscale (the spectral scripts then decompose with vectorial TV)")
    p.add_argument("--arch", default=c.arch, choices=("resnet18", "resnet34", "resnet50"), help="the ResNet trunk")
    p.add_argument("--hidden", type=cli.int_list, default=cli.int_list(c.hidden), metavar="W1,W2",
                   help="widths of the MLP head's hidden layers, e.g. 256,128 ('none': linear head)")
    p.add_argument("--dropout", type=float, default=c.dropout,
                   help="dropout probability before each layer of the MLP head")
    p.add_argument("--std-aug", action="store_true",
                   help="random crop (reflect padding 4 px per 32 px) + horizontal flip, batched")
    p.add_argument("--channels-last", action="store_true",
                   help="weights and batches in torch.channels_last (NHWC) memory: the same float32 maths, other "
                        "convolution kernels; python -m experiments.throughput --formats measures the gain")
    cli.removed_flag(p, "--eval-every-epoch", "every epoch is evaluated (--eval-split none skips it)")
    _unsharp_flags(p.add_argument_group("unsharp-mask control (the matched non-spectral perturbation)"))
    if c.spectral:
        _spectral_flags(p.add_argument_group("spectral TV augmentation"), c)
    return p


def _unsharp_flags(g) -> None:
    g.add_argument("--unsharp-amount", type=parse_range, default=None, metavar="LO,HI",
                   help="augment with the unsharp mask w = f + a (f - G_s * f), a drawn uniformly from [LO, HI) "
                        "(toolkit/unsharp.py), as --unsharp-mode says; None: off")
    g.add_argument("--unsharp-sigma", type=float, default=1.0, metavar="S",
                   help="standard deviation s of the Gaussian G_s of --unsharp-amount, in pixels")
    g.add_argument("--unsharp-mode", choices=("replace", "concat"), default="replace",
                   help="replace: each image replaced by its unsharp mask with probability --unsharp-prob; concat: "
                        "batch + its unsharp-masked copy (the control for --spectral-mode concat)")
    g.add_argument("--unsharp-prob", type=float, default=0.5, metavar="P",
                   help="replace mode: probability that --unsharp-amount replaces an image by its unsharp mask")
    g.add_argument("--per-batch-amounts", action="store_true",
                   help="one amount a per batch (as --per-batch-gains) instead of one per image")


def _spectral_flags(g, c: Config) -> None:
    g.add_argument("--lam", type=float, default=c.lam, help="1/dt of the TV flow (pock.spectral)")
    g.add_argument("--bands", type=cli.int_list, default=cli.int_list(c.bands), metavar="I,J",
                   help="indices of the bands to amplify, 1 = finest")
    g.add_argument("--gains", type=parse_gains, default=parse_gains(c.gains), metavar="LO,HI",
                   help="gains drawn from [LO, HI): integers when both are written without a decimal point "
                        "(3,5 draws 3 or 4, the dissertation), else uniform reals (1.5,2.5); LO may be 0")
    g.add_argument("--tol", **cli.TOL_FLAG)
    g.add_argument("--channelwise-tv", action="store_true",
                   help="with --color: decompose each colour channel on its own instead of with the vectorial "
                        "(colour-coupled) TV that is the default; args.json records the choice as vectorial_tv")
    g.add_argument("--per-batch-gains", action="store_true",
                   help="one gain draw per batch (the dissertation) instead of one per image")
    g.add_argument("--spectral-mode", choices=("concat", "replace"), default="concat",
                   help="concat: batch + its augmented copy (dissertation); replace: each image "
                        "replaced by its augmented version with probability --spectral-prob")
    g.add_argument("--spectral-prob", type=float, default=0.5,
                   help="replace mode: probability that an image is replaced by its augmented version")
    g.add_argument("--no-cache", action="store_true",
                   help="decompose every batch on the fly (the dissertation's scheme; slow)")
    g.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16",
                   help="storage type of the cached bands (float16 halves the disk and memory)")
    g.add_argument("--cache-batch-size", type=int, default=4096, metavar="N",
                   help="images per decomposition call (and per resumable piece of the cache)")


def get_test_parser(entry: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The test CLI of the dataset of ``configs.CONFIGS[entry]``."""
    c: Config = CONFIGS[entry]
    p = cli.make_parser(prog, f"Evaluate a {c.dataset} checkpoint: top-1 and per-class accuracy, confusion matrix.")
    p.set_defaults(dataset=c.dataset, config=entry, script=p.prog)
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint.pt written by the matching train script, or its run folder")
    p.add_argument("--data-dir", default=None, metavar="PATH", help=cli.COMMON_FLAGS["--data-dir"]["help"].format(
        example=f"../shared/data/{c.dataset}.zip"))
    for flag in ("--cache-dir", "--device", "--amp"):
        p.add_argument(flag, **cli.COMMON_FLAGS[flag])
    _data_flags(p)
    p.add_argument("--split", default=c.eval_split, help="split (folder) to evaluate")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="evaluate on N images drawn at random with --seed; None: all")
    p.add_argument("--seed", type=int, default=0, help="seed of the --subset draw")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per evaluation batch")
    p.add_argument("--output-dir", default=None, metavar="DIR",
                   help="where metrics.json and the confusion matrix go; None: <checkpoint folder>/test-<split>")
    from toolkit import robustness
    robustness.add_flags(p)
    return p


def _check_train_args(args) -> None:
    P, P0 = cli.POSITIVE, cli.POSITIVE_OR_NONE
    cli.check_flags(args, [("--epochs", P), ("--batch-size", P), ("--image-size", P), ("--eval-batch-size", P),
                           ("--lr", P), ("--max-steps", P0), ("--dropout", cli.HALF_OPEN_UNIT),
                           ("--unsharp-sigma", P), ("--unsharp-prob", cli.UNIT_INTERVAL)])
    if _spectral(args):
        cli.check_flags(args, [("--lam", P), ("--tol", P0), ("--spectral-prob", cli.UNIT_INTERVAL)])
        if not args.bands or min(args.bands) < 1:
            raise UserError(f"--bands must be 1-based band indices, got {args.bands}")
    # Without an amount the control is off: a concat run would silently train plain.
    if args.unsharp_amount is None and (args.unsharp_mode == "concat" or args.per_batch_amounts):
        raise UserError("--unsharp-mode concat and --per-batch-amounts need --unsharp-amount LO,HI")
    if args.unsharp_mode == "concat" and getattr(args, "spectral_mode", None) == "concat":
        raise UserError("--spectral-mode concat with --unsharp-mode concat would train four copies of every batch; "
                        "concatenate one augmentation only")


def _spectral(args) -> bool:
    return getattr(args, "lam", None) is not None


def _memory_format(args) -> torch.memory_format:
    return torch.channels_last if args.channels_last else torch.contiguous_format


def _vectorial(args) -> bool:
    # Channel-by-channel TV flows move the channels' edges apart and tint them; coupled TV keeps them together.
    return bool(args.color and not args.channelwise_tv)


# --------------------------------------------------------------------------------- augmentation

class Augmenter:
    """The per-batch augmentation: spectral (cached bands or on the fly) and/or crop + flip.

    Its ``generator`` (CPU) is reseeded every epoch by the training loop, so gains and crops are
    fresh each epoch yet reproducible on resume.
    """

    def __init__(self, args, bands=None):
        self.spectral = _spectral(args)
        self.args = args
        self.bands = bands          # (N, K, C, H, W) cached bands, or None (on the fly)
        self.pad = round(4 * args.image_size / 32) if args.std_aug else None
        self.generator = torch.Generator()

    def _spectral(self, x, idx):
        a = self.args
        if self.bands is not None:
            phi = self.bands[idx.to(self.bands.device)].to(x.device, non_blocking=True)
            k = pock.random_gains(x.shape[0], len(a.bands), a.gains, per_image=not a.per_batch_gains,
                                  generator=self.generator, device=x.device)
            return pock.amplify_bands(x, phi, k)
        return pock.spectral_augment(x, tuple(a.bands), a.gains, a.lam, per_image=not a.per_batch_gains,
                                     generator=self.generator, tol=a.tol, vectorial=_vectorial(a))

    def _unsharp(self, x):
        a = self.args
        amounts = unsharp.random_amounts(x.shape[0], a.unsharp_amount, per_image=not a.per_batch_amounts,
                                         generator=self.generator)
        return unsharp.unsharp_mask(x, amounts.to(x.device, x.dtype), a.unsharp_sigma)

    def _augment(self, x, y, mode: str, prob: float, make) -> tuple:
        """concat: the batch and its copy ``make(x, slice(None))``; replace: each image, with probability
        ``prob``, by its version ``make(x[pick], pick)`` (which images is drawn first, as it always was, so
        that replace runs keep their draws)."""
        if mode == "concat":
            return torch.cat([x, make(x, slice(None))]), torch.cat([y, y])
        pick = torch.rand(x.shape[0], generator=self.generator) < prob
        if pick.any():
            x, dev_pick = x.clone(), pick.to(x.device)
            x[dev_pick] = make(x[dev_pick], pick)
        return x, y

    def __call__(self, x, y, idx):
        a = self.args
        if self.spectral:
            x, y = self._augment(x, y, a.spectral_mode, a.spectral_prob, lambda f, pick: self._spectral(f, idx[pick]))
        if a.unsharp_amount is not None:
            x, y = self._augment(x, y, a.unsharp_mode, a.unsharp_prob, lambda f, _: self._unsharp(f))
        if self.pad is not None:
            x = random_crop_flip(x, self.pad, self.generator)
        return x, y


# ------------------------------------------------------------------------------------- training

def _load_split(args, split, subset, seed, dist: Dist, image_size: int, grayscale: bool):
    """Rank 0 decodes (and fills the decode cache) first; the other ranks then read the cache."""
    kw = dict(data_dir=args.data_dir, image_size=image_size, grayscale=grayscale, subset=subset, seed=seed,
              download_root=args.download_root, cache_dir=str(Path(args.cache_dir) / "decoded"),
              workers=args.workers, progress=dist.is_main and not args.no_progress)
    out, err = None, None
    if dist.is_main:
        try:
            out = load_images(args.dataset, split, **kw)
        except DataError as e:
            err = str(e)
    if dist.enabled:
        # Tell the other ranks, or they would wait forever for a rank that has given up.
        box = [err]
        torch.distributed.broadcast_object_list(box, src=0)
        err = box[0]
    if err is not None:
        raise DataError(err)
    if not dist.is_main:
        out = load_images(args.dataset, split, **kw)
    return out


def _load_data(args, dist: Dist) -> tuple:
    """The training split (``--subset`` drawn with ``--seed``) and the evaluation split (or None)."""
    size, gray = args.image_size, not args.color
    train_set = _load_split(args, args.train_split, args.subset, args.seed, dist, size, gray)
    if str(args.eval_split).lower() == "none":
        return train_set, None
    # The evaluation draw is fixed, so that every seed is measured on the same images.
    eval_set = _load_split(args, args.eval_split, args.eval_subset, 0, dist, size, gray)
    if eval_set.classes != train_set.classes:
        raise DataError(f"{args.data_dir or args.dataset}: split '{args.eval_split}' has other classes than "
                        f"'{args.train_split}'; both splits need the same class folders")
    return train_set, eval_set


def _meta_for(args, classes) -> dict:
    return model_meta(args.arch, len(classes), 3 if args.color else 1, args.hidden, args.dropout,
                      dataset=args.dataset, image_size=args.image_size, grayscale=not args.color,
                      classes=list(classes))


def _to_device_if_fits(t: torch.Tensor, device: torch.device, what: str, show: bool,
                       fraction: float = 0.3) -> torch.Tensor:
    """Keep a dataset tensor on the GPU when it takes less than ``fraction`` of the free memory.

    Otherwise it stays where it is (host memory, or the band cache's memory map) and each step
    copies only its batch over; ``show`` says so, since every step then pays for the copy.
    """
    if device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    size = t.numel() * t.element_size()
    if size < fraction * free:
        return t.to(device)
    if show:
        print(f"note: {what} ({size / 2**30:.2f} GiB) exceed {fraction:.0%} of the free memory of {device} "
              f"({free / 2**30:.2f} GiB); they stay in host memory and each batch is copied over", flush=True)
    return t


def _band_cache(args, train_set, device, show: bool, is_main: bool) -> tuple:
    """The cached bands the augmentation amplifies (None without spectral augmentation or with --no-cache)."""
    if not _spectral(args) or args.no_cache:
        return None, None
    from toolkit import bandcache
    t0 = time.perf_counter()
    bands = bandcache.load_or_build(
        train_set.images, cache_dir=Path(args.cache_dir) / "bands", lam=args.lam,
        components=[f"phi{b}" for b in args.bands], tol=args.tol, vectorial=_vectorial(args), device=device,
        batch_size=args.cache_batch_size, dtype=getattr(torch, args.cache_dtype),
        data_key=train_set.source, progress=show)
    info = {"seconds": round(time.perf_counter() - t0, 3), "images": len(train_set), "shape": list(bands.shape)}
    return _to_device_if_fits(bands, device, "the cached bands", is_main), info


def _resume(args, meta, model, optimizer, scaler, dist: Dist) -> tuple:
    """Restore a checkpoint into the model and optimiser; returns ``(epoch, step, records)`` to continue from."""
    path = checkpoints.resume_path(args.resume, args.output_dir)
    if path is None:
        return 0, 0, []
    ckpt = checkpoints.load(path, "classifier", WRITER)
    checkpoints.check_compatible(ckpt["meta"], meta, RESUME_KEYS, path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    checkpoints.set_rng_state(ckpt["rng"], dist.device)
    if dist.is_main:
        print(f"resumed from {path} at epoch {ckpt['epoch']} (step {ckpt['step']})")
    return int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt["metrics"])


def _on_device(image_set, device, what: str, show: bool) -> tuple:
    images = _to_device_if_fits(image_set.images, device, what, show)
    return images, image_set.labels.to(images.device)


def train(args) -> dict:
    """Run one training (see the module docstring); returns the final results dict."""
    _check_train_args(args)
    if _spectral(args):
        args.vectorial_tv = _vectorial(args)
    dist = init_distributed(args.device)
    try:
        return _train(args, dist)
    finally:
        cleanup_distributed()


def _train(args, dist: Dist) -> dict:
    device, out_dir, show = dist.device, Path(args.output_dir), dist.is_main and not args.no_progress
    amp = bool(args.amp and device.type == "cuda")
    if args.amp and not amp and dist.is_main:
        print("note: --amp applies to CUDA only; training in float32 on", device)
    # Everything that can fail on user input happens before the first file is written.
    train_set, eval_set = _load_data(args, dist)
    meta = _meta_for(args, train_set.classes)
    torch.manual_seed(args.seed)
    model = classifier_from_meta(meta).to(device, memory_format=_memory_format(args))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    start_epoch, step, records = _resume(args, meta, model, optimizer, scaler, dist)
    bands, cache_info = _band_cache(args, train_set, device, show, dist.is_main)
    images, labels = _on_device(train_set, device, "the training images", dist.is_main)
    test_on = _on_device(eval_set, device, "the evaluation images", dist.is_main) if eval_set is not None else None
    augment = Augmenter(args, bands) if (_spectral(args) or args.std_aug or args.unsharp_amount) else None
    net = model if not dist.enabled else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)

    def test_accuracy():
        return evaluate(model, *test_on, meta["num_classes"], device=device, batch_size=args.eval_batch_size,
                        amp=amp, dist=dist)

    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.write_args(out_dir, args)
    last_eval = None
    for epoch in range(start_epoch, args.epochs):
        if args.max_steps is not None and step >= args.max_steps:
            break
        torch.manual_seed(seed_for(args.seed, epoch, dist.rank, 1))  # dropout
        if augment is not None:
            augment.generator.manual_seed(seed_for(args.seed, epoch, dist.rank, 2))
        batches = epoch_batches(len(train_set), args.batch_size, args.seed, epoch, dist)
        stats = train_one_epoch(net, optimizer, images, labels, batches, device=device, augment=augment,
                                scaler=scaler, amp=amp, step=step, max_steps=args.max_steps, dist=dist,
                                progress=show, desc=f"epoch {epoch + 1}/{args.epochs}",
                                memory_format=_memory_format(args))
        step = stats.pop("step")
        rec = {"epoch": epoch + 1, "step": step, **stats, "lr": optimizer.param_groups[0]["lr"],
               "aug_fraction": stats["aug_time"] / max(stats["epoch_time"], 1e-12)}
        if test_on is not None:
            last_eval = test_accuracy()
            rec.update(test_acc=last_eval["acc"], test_loss=last_eval["loss"])
        records.append(rec)
        if dist.is_main:
            _report_epoch(args, rec)
            ckpt = checkpoints.make("classifier", meta=meta, args=args, model=model.state_dict(),
                                    optimizer=optimizer.state_dict(),
                                    scaler=scaler.state_dict() if scaler is not None else None, epoch=epoch + 1,
                                    step=step, rng=checkpoints.rng_state(device), metrics=records)
            _save_epoch(out_dir, ckpt, records, f"{out_dir.name}: {args.dataset} {args.arch}")
    if test_on is not None and last_eval is None:  # resumed a finished run: evaluate what it left
        last_eval = test_accuracy()
    results = _results(args, records, step, train_set, eval_set, last_eval, cache_info, dist)
    if dist.is_main:
        write_json(out_dir / "results.json", results)
    return results


def _report_epoch(args, rec: dict) -> None:
    msg = (f"epoch {rec['epoch']}/{args.epochs}  loss {rec['loss']:.4f}  train acc {rec['train_acc']:.4f}  "
           f"{rec['epoch_time']:.1f} s, {rec['images_per_s']:.0f} images/s (augmentation {rec['aug_time']:.1f} s)")
    if "test_acc" in rec:
        msg += f"  test acc ({args.eval_split} split) {rec['test_acc']:.4f}"
    print(msg, flush=True)


def _save_epoch(out_dir: Path, ckpt: dict, records: list, title: str) -> None:
    checkpoints.save(out_dir / "checkpoint.pt", ckpt)
    write_jsonl(out_dir / "metrics.jsonl", records)
    plot_curves(records, out_dir / "curves.png", title)


def _results(args, records, step, train_set, eval_set, last_eval, cache_info, dist: Dist) -> dict:
    train_time = sum(r["epoch_time"] for r in records)
    results = {"epochs": len(records), "steps": step, "train_images": len(train_set),
               "train_source": train_set.source, "eval_source": eval_set.source if eval_set is not None else None,
               "train_time": train_time, "aug_time": sum(r["aug_time"] for r in records),
               "images_per_s": sum(r["images"] for r in records) / max(train_time, 1e-12),
               "final_loss": records[-1]["loss"] if records else None,
               "final_train_acc": records[-1]["train_acc"] if records else None,
               "band_cache": cache_info, "world_size": dist.world, "device": str(dist.device),
               "torch": torch.__version__}
    if last_eval is not None:
        results.update(eval_split=args.eval_split, test_acc=last_eval["acc"], test_loss=last_eval["loss"],
                       test_images=last_eval["n"])
    return results


# -------------------------------------------------------------------------------------- testing

def _model_from_checkpoint(ckpt: dict, config: Config, path):
    if ckpt.get("kind") == "classifier":
        checkpoints.check_format(ckpt, path)
        meta, state = ckpt["meta"], ckpt["model"]
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()) and "conv1.weight" in ckpt:
        # A bare state dict, as the dissertation's scripts saved: this script's defaults fill in the rest.
        fc = sorted(k for k in ckpt if k.startswith("fc.") and k.endswith(".weight"))
        meta = model_meta(config.arch, ckpt[fc[-1]].shape[0], ckpt["conv1.weight"].shape[1],
                          [ckpt[k].shape[0] for k in fc[:-1]], config.dropout, dataset=config.dataset,
                          image_size=config.image_size, grayscale=ckpt["conv1.weight"].shape[1] == 1, classes=None)
        state = ckpt
    else:
        raise checkpoints.CheckpointError(f"{path}: neither a checkpoint of the train scripts nor a ResNet state "
                                          f"dict; pass the checkpoint.pt a train script wrote")
    if meta.get("dataset") != config.dataset:
        raise checkpoints.CheckpointError(
            f"{path}: checkpoint holds a {meta.get('dataset')} model ({meta.get('num_classes')} classes), not "
            f"{config.dataset}; use that dataset's test script")
    try:
        model = classifier_from_meta(meta)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise checkpoints.CheckpointError(f"{path}: weights do not fit the model they claim ({first}); "
                                          f"pass a checkpoint of the matching train script") from None
    return model, meta


def load_classifier(path, entry: str | None = None) -> tuple:
    """``(model, meta, checkpoint dict)`` of a train script's checkpoint.pt (or run folder) or a bare state dict.

    ``entry`` names the :data:`CONFIGS` entry whose dataset the checkpoint must hold; its defaults
    rebuild a bare state dict. None takes the dataset a train script's checkpoint records.
    """
    ckpt = checkpoints.load(path, None, WRITER)
    if entry is None:
        entry = (ckpt.get("meta") or {}).get("dataset") if ckpt.get("kind") == "classifier" else None
        if entry not in CONFIGS:
            raise checkpoints.CheckpointError(f"{path}: not a checkpoint of a train script that names its dataset; "
                                              f"pass the checkpoint.pt a train script wrote")
    model, meta = _model_from_checkpoint(ckpt, CONFIGS[entry], path)
    return model, meta, ckpt


def test(args) -> dict:
    """Evaluate ``args.checkpoint`` on ``args.split``; writes metrics.json and the confusion matrix, and with
    ``--robustness`` robustness.json and robustness.png (:mod:`toolkit.robustness`)."""
    from toolkit import robustness
    robustness.check_args(args)
    model, meta, ckpt = load_classifier(args.checkpoint, args.config)
    robustness.check_model(args, meta)
    device = resolve_device(args.device)
    split = _load_split(args, args.split, args.subset, args.seed, Dist(device=device), meta["image_size"],
                        meta["grayscale"])
    # Only the count is compared: a downloaded and a local copy may spell class names differently.
    if len(split.classes) != meta["num_classes"]:
        raise DataError(f"{args.data_dir}: split '{args.split}' has {len(split.classes)} classes but the checkpoint "
                        f"was trained on {meta['num_classes']} (other class folders); test on the same dataset")
    res = evaluate(model.to(device), split.images, split.labels, meta["num_classes"], device=device,
                   batch_size=args.batch_size, amp=bool(args.amp and device.type == "cuda"),
                   progress=not args.no_progress)
    out_dir = Path(args.output_dir or Path(args.checkpoint).resolve().parent / f"test-{args.split}")
    metrics = {"checkpoint": str(args.checkpoint), "dataset": meta["dataset"], "split": args.split,
               "source": split.source, "images": res["n"], "top1": res["acc"], "loss": res["loss"],
               "trained_epochs": ckpt.get("epoch"), "args": vars(args), "git": git_state(),
               "per_class": {c: {"acc": a if n else None, "n": n} for c, a, n in
                             zip(split.classes, res["per_class_acc"], res["class_counts"])}}
    atomic_write_text(out_dir / "confusion_matrix.csv", _confusion_csv(res["confusion"], split.classes))
    plot_confusion(res["confusion"], split.classes, out_dir / "confusion_matrix.png",
                   f"{meta['dataset']} {args.split}: top-1 {res['acc']:.4f}")
    write_json(out_dir / "metrics.json", metrics)
    print(f"{meta['dataset']} {args.split}: top-1 accuracy {res['acc']:.4f} on {res['n']} images -> {out_dir}")
    if args.robustness:
        rob = robustness.run(model, meta, args, device, out_dir)
        mca = rob["mean_corruption_accuracy"]
        print(f"robustness on {rob['images']} images: clean {rob['clean']:.4f}, mean corruption accuracy "
              f"{'none measured' if mca is None else f'{mca:.4f}'} -> {out_dir / 'robustness.json'}")
    return metrics


def _confusion_csv(cm: torch.Tensor, classes: list) -> str:
    """Rows: true class; columns: predicted class; the first row and column name the classes."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true\\pred", *classes])
    w.writerows([c, *map(int, cm[i])] for i, c in enumerate(classes))
    return buf.getvalue()
