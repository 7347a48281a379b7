"""Training and evaluation loop on in-memory tensors, checkpoints, run folders and DDP set-up.

The data never goes through a DataLoader: the whole (uint8) image set sits in memory, on the
training device when it fits, and each step indexes a batch out of it; augmentations are
batched tensor ops. Shuffling is a permutation drawn from ``(seed, epoch)``, and every random
stream (dropout, gains, crops) is reseeded from ``(seed, epoch, rank)`` at the start of an epoch,
so a run resumed from its epoch-``e`` checkpoint repeats exactly what an uninterrupted run does.

Distributed runs follow torchrun's convention (nanoGPT, torchvision references): when ``RANK``
and ``WORLD_SIZE`` are set, :func:`init_distributed` joins the process group (NCCL on GPUs,
gloo on CPU); each rank trains on its shard of every epoch's permutation and only rank 0 writes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.errors import UserError
from toolkit.data import to_unit_range

__all__ = ["Dist", "init_distributed", "cleanup_distributed", "seed_for", "epoch_batches", "random_crop_flip",
           "StepTimer", "train_one_epoch", "evaluate", "resolve_device"]


# ------------------------------------------------------------------------------ devices / DDP

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def resolve_device(name: Optional[str]) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


def init_distributed(device_name: Optional[str]) -> Dist:
    """Join torchrun's process group when ``RANK``/``WORLD_SIZE`` say so; pick each rank's device."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world <= 1:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                             **({"device_id": device} if device.type == "cuda" else {}))
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def cleanup_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _all_reduce(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    if dist.enabled:
        torch.distributed.all_reduce(t)
    return t


# ---------------------------------------------------------------------------------- randomness

def seed_for(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (seed, epoch, rank, stream): distinct streams never collide by offset."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: Dist) -> list:
    """This rank's index batches for one epoch: a ``(seed, epoch)`` permutation, sharded by rank.

    Like DistributedSampler, the permutation is padded by wrapping around so that every rank gets
    the same number of samples (hence of steps, which DDP needs); the last batch may be short.
    """
    g = torch.Generator().manual_seed(seed_for(seed, epoch, 7))
    perm = torch.randperm(n, generator=g)
    if dist.world > 1:
        total = -(-n // dist.world) * dist.world
        perm = torch.cat([perm, perm[: total - n]])[dist.rank::dist.world]
    return list(torch.split(perm, batch_size))


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Batched random crop after ``pad``-pixel reflect padding, then random horizontal flip.

    The CIFAR-10 standard augmentation (pad 4, crop 32, flip) as two gathers on the whole batch;
    draws come from the CPU ``generator`` so that runs are reproducible on any device.
    """
    B, C, H, W = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        oy = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(H, device=x.device)).view(B, 1, H, 1).expand(B, C, H, W + 2 * pad)
        x = xp.gather(2, rows)
        cols = (ox[:, None] + torch.arange(W, device=x.device)).view(B, 1, 1, W).expand(B, C, H, W)
        x = x.gather(3, cols)
    flip = (torch.rand(B, generator=generator) < 0.5).to(x.device).view(B, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


# ------------------------------------------------------------------------------------- timing

class StepTimer:
    """Sums the time of named phases; CUDA events on GPUs, so that timing adds no synchronisation."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.events: dict = {}
        self.seconds: dict = {}

    def start(self, name: str):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return (name, ev)
        return (name, time.perf_counter())

    def stop(self, token) -> None:
        name, t0 = token
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.events.setdefault(name, []).append((t0, ev))
        else:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def totals(self) -> dict:
        if self.cuda:
            torch.cuda.synchronize()
            for name, pairs in self.events.items():
                self.seconds[name] = self.seconds.get(name, 0.0) + sum(a.elapsed_time(b) for a, b in pairs) / 1000
            self.events = {}
        return dict(self.seconds)


# ------------------------------------------------------------------------------ train / eval

def _autocast(device: torch.device, amp: bool):
    return torch.autocast("cuda", dtype=torch.float16, enabled=amp and device.type == "cuda")


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                    labels: torch.Tensor, batches: list, *, device: torch.device,
                    augment: Optional[Callable] = None, scaler=None, amp: bool = False,
                    step: int = 0, max_steps: Optional[int] = None, dist: Dist = Dist(),
                    progress: bool = True, desc: str = "train",
                    memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    """One pass over ``batches`` (index tensors into ``images``/``labels``).

    ``augment(x, y, idx) -> (x, y)`` turns a float batch in [-1, 1] on ``device`` into the batch the
    model trains on (it may grow it, e.g. concatenating augmented copies). Returns the epoch's mean
    loss and accuracy (over the examples trained on), ``images`` (drawn from the training set) and
    ``examples`` (what the model saw, augmented copies included), both summed over ranks,
    ``images_per_s`` (images over the epoch's seconds, which hold no evaluation), the steps, the
    global step, and the seconds spent on data (indexing and conversion), augmentation and compute
    (forward, backward, optimiser step). ``memory_format`` is the layout of the batches the model
    sees (``torch.channels_last`` for a model converted to it, so no step converts its input back).
    """
    from tqdm import tqdm
    model.train()
    timer = StepTimer(device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = torch.zeros((), device=device, dtype=torch.int64)
    n_steps, n_images = 0, 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_start = time.perf_counter()
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False, mininterval=1.0):
        if max_steps is not None and step >= max_steps:
            break
        tok = timer.start("data")
        dev_idx = idx.to(images.device, non_blocking=True)
        x = to_unit_range(images[dev_idx].to(device, non_blocking=True))
        y = labels[dev_idx].to(device, non_blocking=True)
        timer.stop(tok)
        if augment is not None:
            tok = timer.start("aug")
            x, y = augment(x, y, idx)
            timer.stop(tok)
        tok = timer.start("compute")
        x = x.contiguous(memory_format=memory_format)  # timed as compute: the layout is part of its cost
        with _autocast(device, amp):
            out = model(x)
            loss = F.cross_entropy(out, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        timer.stop(tok)
        loss_sum += loss.detach().to(torch.float64) * y.shape[0]
        correct += (out.detach().argmax(1) == y).sum()
        seen += y.shape[0]
        n_images += idx.numel()
        n_steps += 1
        step += 1
    phases = timer.totals()
    if device.type == "cuda":
        torch.cuda.synchronize()
    epoch_time = time.perf_counter() - t_start
    stats = torch.stack([loss_sum, correct.to(torch.float64), seen.to(torch.float64),
                         torch.tensor(float(n_images), dtype=torch.float64, device=device)])
    _all_reduce(stats, dist)
    seen_all = max(stats[2].item(), 1.0)
    return {"loss": stats[0].item() / seen_all, "train_acc": stats[1].item() / seen_all,
            "images": int(stats[3].item()), "examples": int(stats[2].item()),
            "images_per_s": stats[3].item() / max(epoch_time, 1e-12), "steps": n_steps, "step": step,
            "epoch_time": epoch_time, "data_time": phases.get("data", 0.0),
            "aug_time": phases.get("aug", 0.0), "compute_time": phases.get("compute", 0.0)}


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
             device: torch.device, batch_size: int = 256, amp: bool = False, dist: Dist = Dist(),
             progress: bool = False) -> dict:
    """Loss and confusion matrix (rows: true class, columns: predicted) over a whole split.

    Under DDP each rank evaluates every ``world``-th image and the counts are summed, so no image
    is counted twice. ``model`` must be the bare module (not the DDP wrapper).
    """
    from tqdm import tqdm
    model.eval()
    cm = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    mine = torch.arange(dist.rank, images.shape[0], dist.world)
    for idx in tqdm(torch.split(mine, batch_size), desc="eval", unit="batch", disable=not progress, leave=False):
        dev_idx = idx.to(images.device)
        x = to_unit_range(images[dev_idx].to(device, non_blocking=True))
        y = labels[dev_idx].to(device, non_blocking=True)
        with _autocast(device, amp):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").to(torch.float64)
        cm += torch.bincount(y * num_classes + out.argmax(1), minlength=num_classes * num_classes)
    _all_reduce(cm, dist)
    _all_reduce(loss_sum, dist)
    cm = cm.view(num_classes, num_classes).cpu()
    total = int(cm.sum())
    per_class = (cm.diag().double() / cm.sum(1).clamp(min=1).double())
    return {"acc": cm.diag().sum().item() / max(total, 1), "loss": loss_sum.item() / max(total, 1),
            "confusion": cm, "per_class_acc": per_class.tolist(), "class_counts": cm.sum(1).tolist(),
            "n": total}
