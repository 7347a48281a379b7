"""Files that are never seen half-written, and the git state recorded beside results.

Every cache, checkpoint, metrics file and figure of the toolkit goes through :func:`atomic_write`:
the content is written to a temporary file in the target folder and renamed over the target, so
an interrupted job leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "write_json", "write_jsonl",
           "read_json", "save_figure", "exclusive_lock", "git_state", "machine"]

ROOT = Path(__file__).resolve().parent


def atomic_write(path, write: Callable) -> None:
    """``write(tmp_path)`` then rename over ``path``: readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, obj) -> None:
    """``obj`` as indented JSON (non-JSON values such as paths by ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def write_jsonl(path, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))


def read_json(path) -> Optional[object]:
    """The JSON in ``path``, or None when the file is absent (a malformed file is an error)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def save_figure(fig, path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def exclusive_lock(path):
    """An advisory exclusive lock on ``path`` (POSIX ``flock``), held for the ``with`` block.

    The caches use it so that two jobs started together do not build the same files at once: the
    second waits, then finds them built (or resumes what the first left).
    """
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def git_state(*paths) -> dict:
    """HEAD and whether tracked files differ from it (only ``paths``, relative to the repository, when given).

    Untracked files do not count: a run folder or cache inside the checkout does not make the code dirty.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *map(str, paths)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(changed) if commit else None}


def machine(device: str = "cpu") -> dict:
    """What results were measured on: CPU model and cores, Python, torch, and the GPU for a CUDA device."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if str(device).startswith("cuda") and torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "gpu": gpu}
