"""A run's folder and its checkpoint, the same for the classifiers and the GANs.

Every training script writes into its ``--output-dir``:

* ``args.json``: the flags as ``vars(args)`` (flat), plus ``"git"`` (:func:`io_utils.git_state`);
* ``checkpoint.pt``: one dict, saved atomically after every epoch, as in nanoGPT and torchvision's
  references. Classifiers and GANs share one vocabulary (:func:`make`), so a reader of one reads
  the other:

  ========== ==========================================================================
  kind       ``"classifier"`` or ``"gan"``
  format     :data:`FORMAT`, the layout version; another version is refused with a message
  meta       what rebuilds the network(s): architecture, sizes, classes or GAN mode
  args       the flags of the run, ``vars(args)``
  model      the weights (a GAN: ``{"G": ..., "D": ...}``)
  optimizer  the optimiser state(s), keyed like ``model``
  scaler     the AMP gradient scaler state(s), keyed like ``model`` (None or empty without AMP)
  epoch      epochs finished (a GAN: within its current stage)
  step       optimiser steps (a GAN: generator updates) of the whole run
  rng        :func:`rng_state` (a GAN adds its latent-noise generator)
  metrics    the records of ``metrics.jsonl`` / ``losses.jsonl`` so far
  ========== ==========================================================================

  plus what a kind needs besides (a GAN: its stage, the generator of every finished stage, the
  fixed noise of its sample grids, the data it trained on).

``--resume`` takes an optional path (torchvision style): alone it means the run folder's own
``checkpoint.pt``; a path may name the file or the run folder. A checkpoint whose model differs
from what the flags ask for is refused with one line naming the flags that differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from toolkit.errors import CheckpointError
from toolkit.io_utils import atomic_write, git_state, write_json

__all__ = ["CheckpointError", "FORMAT", "KEYS", "make", "save", "load", "check_format", "check_compatible", "resume_path", "write_args",
           "rng_state", "set_rng_state"]

CHECKPOINT = "checkpoint.pt"
# Version 3: the classifiers' and the GANs' checkpoints share one vocabulary (GAN format 2 said
# model_args/records/state; classifier checkpoints had no format).
FORMAT = 3
# The keys every checkpoint holds, whatever its kind.
KEYS = ("kind", "format", "meta", "args", "model", "optimizer", "scaler", "epoch", "step", "rng", "metrics")


def make(kind: str, *, meta: dict, args, model, optimizer, scaler, epoch: int, step: int, rng: dict,
         metrics: list, **extra) -> dict:
    """A checkpoint dict in the shared vocabulary (see the module docstring); ``extra`` adds kind-specific keys."""
    return {"kind": kind, "format": FORMAT, "meta": meta, "args": vars(args), "model": model, "optimizer": optimizer,
            "scaler": scaler, "epoch": epoch, "step": step, "rng": rng, "metrics": metrics, **extra}


def save(path, ckpt: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def load(path, kind: Optional[str], writer: str) -> dict:
    """The checkpoint dict in ``path`` (a file or a run folder), checked to be of ``kind`` unless None.

    ``writer`` names the script family that writes this kind (for the messages), e.g.
    ``"a train script"`` or ``"gan.py"``.

    Raises
    ------
    CheckpointError
        The file is missing, is not a PyTorch file of tensors and plain values, or holds another
        kind of checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; pass the {CHECKPOINT} that {writer} wrote in its "
                              f"--output-dir (or that folder)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first}); pass a {CHECKPOINT} "
                              f"written by {writer}, or re-run the training") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict; pass a "
                              f"{CHECKPOINT} written by {writer}")
    if kind is not None and ckpt.get("kind") != kind:
        found = ckpt.get("kind") or "unknown"
        raise CheckpointError(f"{path}: a checkpoint of kind {found!r}, not {kind!r}; pass a {CHECKPOINT} "
                              f"written by {writer}")
    if kind is not None:
        check_format(ckpt, path)
    return ckpt


def check_format(ckpt: dict, path) -> None:
    """Refuse a checkpoint of another layout version than :data:`FORMAT`."""
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a {ckpt.get('kind', 'checkpoint')} checkpoint of format "
                              f"{ckpt.get('format', 'none')}, this code reads format {FORMAT}; retrain with this "
                              f"version, or use the version of the code that wrote it")


def check_compatible(saved: dict, current: dict, flags: dict, path) -> None:
    """Refuse a checkpoint whose model description differs from this run's.

    ``flags`` maps each key of the two ``meta`` dicts that must agree to the flag that sets it;
    the message names every difference, e.g. ``--hidden [256, 128] (this run: [64])``.
    """
    diff = [f"{flag} {saved.get(k)!r} (this run: {current.get(k)!r})" for k, flag in flags.items()
            if saved.get(k) != current.get(k)]
    if diff:
        raise CheckpointError(f"{path}: checkpoint from another model: {'; '.join(diff)}; use the checkpoint's "
                              f"flags or another --output-dir")


def resume_path(resume: Optional[str], output_dir) -> Optional[Path]:
    """Where ``--resume`` points: None (no resume), the run folder's checkpoint (bare flag), or a file/folder."""
    if resume is None:
        return None
    path = Path(resume) if resume else Path(output_dir)
    return path / CHECKPOINT if path.is_dir() or not resume else path


def write_args(output_dir, args) -> None:
    """``args.json``: the flags as given (flat) and the code's git state."""
    write_json(Path(output_dir) / "args.json", {**vars(args), "git": git_state()})


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
