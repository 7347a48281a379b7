"""Train and test the dissertation's classifiers; the nine top-level scripts are thin entry points.

``train_pt.py`` and friends each hold a dict of dataset defaults and call :func:`train_cli` or
:func:`test_cli` here. A training run:

1. decodes its splits once into memory (``data.load_images``, cached on disk);
2. for the spectral scripts, decomposes every training image once into the bands it amplifies
   (``bandcache.load_or_build``), unless ``--no-cache`` asks for the dissertation's per-batch
   decomposition (``pock.spectral_augment``);
3. trains ResNet-18 with Adam on batches indexed out of memory; the spectral scripts train on each
   batch plus its augmented copy (``--spectral-mode concat``, the dissertation) or replace images
   by their augmented version with probability ``--spectral-prob`` (``replace``);
4. writes into ``--output-dir``: ``args.json`` (with the git commit), ``checkpoint.pt`` every
   epoch (atomically), ``metrics.jsonl`` (one line per epoch), ``curves.png`` and at the end
   ``results.json`` with the test accuracy on ``--eval-split``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from data import DataError, atomic_write, load_images
from training import (CheckpointError, Dist, cleanup_distributed, epoch_batches, evaluate,
                      git_commit, init_distributed, load_checkpoint, plot_confusion, plot_curves,
                      random_crop_flip, rng_state, save_checkpoint, seed_for, set_rng_state,
                      train_one_epoch, write_json, write_jsonl)

__all__ = ["UsageError", "get_train_parser", "get_test_parser", "train", "test", "train_cli", "test_cli"]


class UsageError(Exception):
    """A flag value that cannot work; one line saying what to do."""


USER_ERRORS = (DataError, CheckpointError, UsageError)


# ------------------------------------------------------------------------------------- flags

def _int_list(text: str) -> list:
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _common_data_flags(p: argparse.ArgumentParser, d: dict) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder or .zip in ImageFolder layout <split>/<class>/<image> (e.g. ../shared/data/"
                        f"{d['dataset']}.zip); default: download with torchvision into --download-root")
    p.add_argument("--download-root", default="./data", help="where torchvision downloads datasets")
    p.add_argument("--decode-cache-dir", default="cache/decoded",
                   help="cache of decoded (resized, grayscale) image tensors; '' disables it")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--workers", type=int, default=0, help="threads decoding images (training reads from memory)")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 autocast, CUDA only)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def get_train_parser(defaults: dict, spectral: bool = False, prog: str | None = None) -> argparse.ArgumentParser:
    """The training CLI; ``defaults`` (a script's dataset dict) sets the per-dataset values."""
    d = defaults
    p = argparse.ArgumentParser(prog=prog, description=(
        f"Train {d.get('arch', 'resnet18')} on grayscale {d['dataset']}"
        + (" with spectral TV augmentation" if spectral else "") + " (dissertation defaults)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(dataset=d["dataset"])
    _common_data_flags(p, d)
    p.add_argument("--output-dir", default=f"runs/{prog or d['dataset']}", help="run folder")
    p.add_argument("--train-split", default=d["train_split"], help="split to train on")
    p.add_argument("--eval-split", default=d["eval_split"],
                   help="split whose test accuracy is written to metrics/results ('none': skip)")
    p.add_argument("--eval-subset", type=int, default=d.get("eval_subset"), help="evaluate on this many images")
    p.add_argument("--eval-every-epoch", action="store_true", help="evaluate after every epoch, not only the last")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps in all")
    p.add_argument("--batch-size", type=int, default=d.get("batch_size", 20), help="images per step per process")
    p.add_argument("--lr", type=float, default=d.get("lr", 1e-3), help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=d.get("weight_decay", 0.0))
    p.add_argument("--subset", type=int, default=d.get("subset"), help="train on this many images (random)")
    p.add_argument("--image-size", type=int, default=d["image_size"])
    p.add_argument("--color", action="store_true", help="RGB input instead of grayscale")
    p.add_argument("--arch", default=d.get("arch", "resnet18"), choices=("resnet18", "resnet34", "resnet50"))
    p.add_argument("--hidden", type=_int_list, default=_int_list(d["hidden"]),
                   help="widths of the MLP head's hidden layers, e.g. 256,128 ('none': linear head)")
    p.add_argument("--dropout", type=float, default=d.get("dropout", 0.5))
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the --subset draw (kept fixed across --seed)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default: --output-dir/checkpoint.pt)")
    p.add_argument("--std-aug", action="store_true",
                   help="random crop (reflect padding 4 px per 32 px) + horizontal flip, batched")
    if spectral:
        g = p.add_argument_group("spectral TV augmentation")
        g.add_argument("--lam", type=float, default=d.get("lam", 7.0), help="1/dt of the TV flow")
        g.add_argument("--bands", type=_int_list, default=_int_list(d.get("bands", "1,2")),
                       help="bands to amplify (1 = finest)")
        g.add_argument("--gains", type=_int_list, default=_int_list(d.get("gains", "3,5")),
                       help="integer gains drawn from [lo, hi)")
        g.add_argument("--tol", type=float, default=1e-4, help="duality gap per pixel of each ROF solve")
        g.add_argument("--per-batch-gains", action="store_true",
                       help="one gain draw per batch (the dissertation) instead of one per image")
        g.add_argument("--spectral-mode", choices=("concat", "replace"), default="concat",
                       help="concat: batch + its augmented copy (dissertation); replace: each image "
                            "replaced by its augmented version with probability --spectral-prob")
        g.add_argument("--spectral-prob", type=float, default=0.5)
        g.add_argument("--no-cache", action="store_true",
                       help="decompose every batch on the fly (the dissertation's scheme; slow)")
        g.add_argument("--cache-dir", default="cache/bands", help="band cache folder")
        g.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16")
        g.add_argument("--cache-batch-size", type=int, default=256, help="images per decomposition call")
    return p


def get_test_parser(defaults: dict, prog: str | None = None) -> argparse.ArgumentParser:
    d = defaults
    p = argparse.ArgumentParser(prog=prog, description=(
        f"Evaluate a {d['dataset']} checkpoint: top-1 and per-class accuracy, confusion matrix."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(dataset=d["dataset"])
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by the matching train script")
    _common_data_flags(p, d)
    p.add_argument("--split", default=d["eval_split"], help="split to evaluate")
    p.add_argument("--subset", type=int, default=None, help="evaluate on this many images (random)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--output-dir", default=None, help="default: <checkpoint folder>/test-<split>")
    return p


def _check_train_args(args) -> None:
    for name in ("epochs", "batch_size", "image_size", "eval_batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.lr <= 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps must be positive, got {args.max_steps}")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if getattr(args, "lam", None) is not None:
        if args.lam <= 0 or args.tol <= 0:
            raise UsageError("--lam and --tol must be positive")
        if not args.bands or min(args.bands) < 1:
            raise UsageError(f"--bands must be 1-based band indices, got {args.bands}")
        if len(args.gains) != 2 or args.gains[1] <= args.gains[0]:
            raise UsageError(f"--gains must be lo,hi with hi > lo (integers drawn from [lo, hi)), got {args.gains}")
        if not 0 <= args.spectral_prob <= 1:
            raise UsageError(f"--spectral-prob must lie in [0, 1], got {args.spectral_prob}")


# --------------------------------------------------------------------------------- augmentation

class Augmenter:
    """The per-batch augmentation: spectral (cached bands or on the fly) and/or crop + flip.

    Its ``generator`` (CPU) is reseeded every epoch by the training loop, so gains and crops are
    fresh each epoch yet reproducible on resume.
    """

    def __init__(self, args, bands=None):
        self.spectral = getattr(args, "lam", None) is not None
        self.args = args
        self.bands = bands          # (N, K, C, H, W) cached bands, or None (on the fly)
        self.pad = round(4 * args.image_size / 32) if args.std_aug else None
        self.generator = torch.Generator()

    def _spectral(self, x, idx):
        import pock
        a = self.args
        if self.bands is not None:
            phi = self.bands[idx.to(self.bands.device)].to(x.device, non_blocking=True)
            k = pock.random_gains(x.shape[0], len(a.bands), tuple(a.gains), per_image=not a.per_batch_gains,
                                  generator=self.generator, device=x.device)
            return pock.amplify_bands(x, phi, k)
        return pock.spectral_augment(x, tuple(a.bands), tuple(a.gains), a.lam, per_image=not a.per_batch_gains,
                                     generator=self.generator, tol=a.tol)

    def __call__(self, x, y, idx):
        if self.spectral:
            if self.args.spectral_mode == "concat":
                x = torch.cat([x, self._spectral(x, idx)])
                y = torch.cat([y, y])
            else:
                pick = torch.rand(x.shape[0], generator=self.generator) < self.args.spectral_prob
                if pick.any():
                    x = x.clone()
                    dev_pick = pick.to(x.device)
                    x[dev_pick] = self._spectral(x[dev_pick], idx[pick])
        if self.pad is not None:
            x = random_crop_flip(x, self.pad, self.generator)
        return x, y


# ------------------------------------------------------------------------------------- training

def _load_split(args, split, subset, dist: Dist):
    """Rank 0 decodes (and fills the decode cache) first; the other ranks then read the cache."""
    kw = dict(data_dir=args.data_dir, image_size=args.image_size, grayscale=not getattr(args, "color", False),
              subset=subset, seed=args.data_seed, download_root=args.download_root,
              cache_dir=args.decode_cache_dir or None, workers=args.workers,
              progress=dist.is_main and not args.no_progress)
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


def _meta_for(args, n_classes, classes):
    from models import model_meta
    return model_meta(args.arch, n_classes, 3 if args.color else 1, args.hidden, args.dropout,
                      dataset=args.dataset, image_size=args.image_size, grayscale=not args.color,
                      classes=list(classes))


def _check_meta(found: dict, expected: dict, path) -> None:
    keys = ("dataset", "arch", "num_classes", "in_channels", "hidden", "image_size")
    diff = [f"{k}={found.get(k)!r} (this run: {expected.get(k)!r})" for k in keys if found.get(k) != expected.get(k)]
    if diff:
        raise CheckpointError(f"{path}: checkpoint is from a different run ({'; '.join(diff)}); resume with the "
                              f"same flags or start a new --output-dir")


def _to_device_if_fits(t: torch.Tensor, device: torch.device, fraction: float = 0.3) -> torch.Tensor:
    """Keep a dataset tensor on the GPU when it takes less than ``fraction`` of the free memory.

    Otherwise it stays where it is (host memory, or the band cache's memory map) and each step
    copies only its batch over.
    """
    if device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    return t.to(device) if t.numel() * t.element_size() < fraction * free else t


def train(args) -> dict:
    """Run one training (see the module docstring); returns the final results dict."""
    _check_train_args(args)
    try:
        dist = init_distributed(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        return _train(args, dist)
    finally:
        cleanup_distributed()


def _train(args, dist: Dist) -> dict:
    from models import make_classifier
    device = dist.device
    show = dist.is_main and not args.no_progress
    out_dir = Path(args.output_dir)
    amp = bool(args.amp and device.type == "cuda")
    if args.amp and not amp and dist.is_main:
        print("note: --amp applies to CUDA only; training in float32 on", device)

    # Everything that can fail on user input happens before the first file is written.
    train_set = _load_split(args, args.train_split, args.subset, dist)
    eval_set = None
    if str(args.eval_split).lower() != "none":
        eval_set = _load_split(args, args.eval_split, args.eval_subset, dist)
        if eval_set.classes != train_set.classes:
            raise DataError(f"{args.data_dir or args.dataset}: split '{args.eval_split}' has other classes than "
                            f"'{args.train_split}'; both splits need the same class folders")
    n_classes = len(train_set.classes)
    meta = _meta_for(args, n_classes, train_set.classes)

    torch.manual_seed(args.seed)
    model = make_classifier(args.arch, num_classes=n_classes, in_channels=meta["in_channels"],
                            hidden=args.hidden, dropout=args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    start_epoch, step, records = 0, 0, []
    if args.resume is not None:
        path = Path(args.resume) if args.resume else out_dir / "checkpoint.pt"
        ckpt = load_checkpoint(path)
        if "meta" not in ckpt or "model" not in ckpt:
            raise CheckpointError(f"{path}: not a checkpoint of the train scripts (no 'meta'/'model'); "
                                  f"start without --resume")
        _check_meta(ckpt["meta"], meta, path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step, records = int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt.get("metrics", []))
        set_rng_state(ckpt.get("rng", {}), device)
        if dist.is_main:
            print(f"resumed from {path} at epoch {start_epoch} (step {step})")

    bands, cache_info = None, None
    if getattr(args, "lam", None) is not None and not args.no_cache:
        import bandcache
        t0 = time.perf_counter()
        bands = bandcache.load_or_build(
            train_set.images, cache_dir=args.cache_dir, lam=args.lam,
            components=[f"phi{b}" for b in args.bands], tol=args.tol, device=device,
            batch_size=args.cache_batch_size, dtype=getattr(torch, args.cache_dtype),
            data_key=train_set.source, progress=show)
        cache_info = {"seconds": round(time.perf_counter() - t0, 3), "images": len(train_set),
                      "shape": list(bands.shape)}
        bands = _to_device_if_fits(bands, device)

    images = _to_device_if_fits(train_set.images, device)
    labels = train_set.labels.to(images.device)
    if eval_set is not None:
        eval_images = _to_device_if_fits(eval_set.images, device)
        eval_labels = eval_set.labels.to(eval_images.device)
    augment = Augmenter(args, bands) if (getattr(args, "lam", None) is not None or args.std_aug) else None

    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json({"args": vars(args), "git": git_commit(), "world_size": dist.world, "device": str(device),
                    "torch": torch.__version__, "train": train_set.source, "train_images": len(train_set),
                    "eval": eval_set.source if eval_set is not None else None,
                    "model": meta | {"classes": meta["classes"][:20]}}, out_dir / "args.json")
        if cache_info is not None:
            print(f"band cache: {cache_info['shape']} ready in {cache_info['seconds']:.1f} s")
    title = f"{Path(out_dir).name}: {args.dataset} {args.arch}"
    last_eval = None
    epoch = start_epoch
    for epoch in range(start_epoch, args.epochs):
        if args.max_steps is not None and step >= args.max_steps:
            break
        torch.manual_seed(seed_for(args.seed, epoch, dist.rank, 1))  # dropout
        if augment is not None:
            augment.generator.manual_seed(seed_for(args.seed, epoch, dist.rank, 2))
        batches = epoch_batches(len(train_set), args.batch_size, args.seed, epoch, dist)
        stats = train_one_epoch(net, optimizer, images, labels, batches, device=device, augment=augment,
                                scaler=scaler, amp=amp, step=step, max_steps=args.max_steps, dist=dist,
                                progress=show, desc=f"epoch {epoch + 1}/{args.epochs}")
        step = stats.pop("step")
        rec = {"epoch": epoch + 1, "step": step, **stats, "lr": optimizer.param_groups[0]["lr"]}
        rec["aug_fraction"] = rec["aug_time"] / max(rec["epoch_time"], 1e-12)
        finished = epoch + 1 == args.epochs or (args.max_steps is not None and step >= args.max_steps)
        if eval_set is not None and (args.eval_every_epoch or finished):
            last_eval = evaluate(model, eval_images, eval_labels, n_classes, device=device,
                                 batch_size=args.eval_batch_size, amp=amp, dist=dist)
            rec.update(test_acc=last_eval["acc"], test_loss=last_eval["loss"])
        records.append(rec)
        if dist.is_main:
            msg = (f"epoch {epoch + 1}/{args.epochs}  loss {rec['loss']:.4f}  train acc {rec['train_acc']:.4f}  "
                   f"{rec['epoch_time']:.1f} s (augmentation {rec['aug_time']:.1f} s)")
            if "test_acc" in rec:
                msg += f"  test acc ({args.eval_split} split) {rec['test_acc']:.4f}"
            print(msg, flush=True)
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict() if scaler is not None else None,
                             "epoch": epoch + 1, "step": step, "args": vars(args), "meta": meta,
                             "rng": rng_state(device), "metrics": records}, out_dir / "checkpoint.pt")
            write_jsonl(records, out_dir / "metrics.jsonl")
            plot_curves(records, out_dir / "curves.png", title)

    if eval_set is not None and last_eval is None:  # resumed a finished run: evaluate what it left
        last_eval = evaluate(model, eval_images, eval_labels, n_classes, device=device,
                             batch_size=args.eval_batch_size, amp=amp, dist=dist)
    results = {"epochs": len(records), "steps": step, "train_images": len(train_set),
               "train_time": sum(r["epoch_time"] for r in records),
               "aug_time": sum(r["aug_time"] for r in records),
               "final_loss": records[-1]["loss"] if records else None,
               "final_train_acc": records[-1]["train_acc"] if records else None,
               "band_cache": cache_info, "world_size": dist.world, "device": str(device)}
    if last_eval is not None:
        results.update(eval_split=args.eval_split, test_acc=last_eval["acc"], test_loss=last_eval["loss"],
                       test_images=last_eval["n"])
    if dist.is_main:
        write_json(results, out_dir / "results.json")
    return results


# -------------------------------------------------------------------------------------- testing

def _model_from_checkpoint(ckpt: dict, defaults: dict, path):
    from models import classifier_from_meta, make_classifier, model_meta
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else None
    state = ckpt.get("model") if meta is not None else None
    if meta is None:
        # A bare state dict, as the dissertation's scripts saved: assume this script's defaults.
        if not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()) or "conv1.weight" not in ckpt:
            raise CheckpointError(f"{path}: neither a checkpoint of the train scripts nor a ResNet state dict; "
                                  f"pass the checkpoint.pt a train script wrote")
        fc = sorted(k for k in ckpt if k.startswith("fc.") and k.endswith(".weight"))
        meta = model_meta(defaults.get("arch", "resnet18"), ckpt[fc[-1]].shape[0], ckpt["conv1.weight"].shape[1],
                          [ckpt[k].shape[0] for k in fc[:-1]], defaults.get("dropout", 0.5),
                          dataset=defaults["dataset"], image_size=defaults["image_size"],
                          grayscale=ckpt["conv1.weight"].shape[1] == 1, classes=None)
        state = ckpt
    if meta.get("dataset") != defaults["dataset"]:
        raise CheckpointError(f"{path}: checkpoint holds a {meta.get('dataset')} model ({meta.get('num_classes')} "
                              f"classes), not {defaults['dataset']}; use that dataset's test script")
    try:
        model = classifier_from_meta(meta)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: weights do not fit the model they claim ({first}); "
                              f"pass a checkpoint of the matching train script") from None
    return model, meta


def test(args, defaults: dict) -> dict:
    """Evaluate ``args.checkpoint`` on ``args.split``; writes metrics.json and the confusion matrix."""
    from training import resolve_device
    ckpt = load_checkpoint(args.checkpoint)
    model, meta = _model_from_checkpoint(ckpt, defaults, args.checkpoint)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    args.dataset, args.image_size, args.color = defaults["dataset"], meta["image_size"], not meta["grayscale"]
    data = _load_split(args, args.split, args.subset, Dist(device=device))
    # Only the count is compared: a downloaded and a local copy may spell class names differently.
    if len(data.classes) != meta["num_classes"]:
        raise DataError(f"{args.data_dir}: split '{args.split}' has {len(data.classes)} classes but the checkpoint "
                        f"was trained on {meta['num_classes']} (other class folders); test on the same dataset")
    model.to(device)
    amp = bool(args.amp and device.type == "cuda")
    res = evaluate(model, data.images, data.labels, meta["num_classes"], device=device,
                   batch_size=args.batch_size, amp=amp, progress=not args.no_progress)
    out_dir = Path(args.output_dir) if args.output_dir else Path(args.checkpoint).resolve().parent / f"test-{args.split}"
    classes = data.classes
    metrics = {"checkpoint": str(args.checkpoint), "dataset": meta["dataset"], "split": args.split,
               "source": data.source, "images": res["n"], "top1": res["acc"], "loss": res["loss"],
               "trained_epochs": ckpt.get("epoch"), "git": git_commit(),
               "per_class": {c: {"acc": a if n else None, "n": n} for c, a, n in
                             zip(classes, res["per_class_acc"], res["class_counts"])}}
    out_dir.mkdir(parents=True, exist_ok=True)
    cm = res["confusion"]
    rows = ["true\\pred," + ",".join(_csv_cell(c) for c in classes)]
    rows += [_csv_cell(c) + "," + ",".join(str(int(v)) for v in cm[i]) for i, c in enumerate(classes)]
    atomic_write(out_dir / "confusion_matrix.csv", lambda tmp: Path(tmp).write_text("\n".join(rows) + "\n"))
    plot_confusion(cm, classes, out_dir / "confusion_matrix.png",
                   f"{meta['dataset']} {args.split}: top-1 {res['acc']:.4f}")
    write_json(metrics, out_dir / "metrics.json")
    print(f"{meta['dataset']} {args.split}: top-1 accuracy {res['acc']:.4f} on {res['n']} images -> {out_dir}")
    return metrics


def _csv_cell(text) -> str:
    s = str(text)
    return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s


# ---------------------------------------------------------------------------------- entry points

def _prog() -> str:
    return Path(sys.argv[0]).stem or "classify"


def train_cli(defaults: dict, spectral: bool = False, argv=None) -> dict:
    """Entry point of the train scripts: parse flags over ``defaults``, train, exit 1 on user errors."""
    args = get_train_parser(defaults, spectral, prog=_prog()).parse_args(argv)
    try:
        return train(args)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")


def test_cli(defaults: dict, argv=None) -> dict:
    """Entry point of the test scripts."""
    args = get_test_parser(defaults, prog=_prog()).parse_args(argv)
    try:
        return test(args, defaults)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
