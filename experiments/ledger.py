"""The ledger: the small files of every finished job, committed under ``results/runs/<profile>/<job id>/``.

An entry holds ``run.json`` (written here: the job's spec, the fingerprint of the code it ran, the
data's name and sha256, the machine, when it ran and the commands, with repository-relative paths)
and, per step, the files the scripts write that are small and say what happened:
``args.json``, ``results.json``, ``metrics.jsonl``, the test scripts' ``metrics.json``,
``confusion_matrix.csv`` and, with ``--robustness``, ``robustness.json``, the GAN's ``losses.jsonl``,
and two images: ``gan_test.py``'s ``samples_spectra.png``, since a generator's result is what its
samples look like, and the test scripts' ``robustness.png``, a small chart of the robustness
numbers. Never checkpoints (the runner keeps those outside git), caches or other images.

The runner skips a job whose entry is current, so a sweep continues on any clone that has the
ledger; the report reads nothing else. An entry is *stale* when the code its job executes now has
another fingerprint, or the profile now asks for other settings; the runner redoes it and replaces
the entry. For a profile pinned to a release (:mod:`experiments.release`), "the code its job
executes now" is the release's code, not the working tree's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from toolkit.fingerprint import fingerprint
from toolkit.io_utils import read_json, write_json

from .plan import REPO, Job
from .release import release_fingerprint

__all__ = ["SMALL_FILES", "DEFAULT_ROOT", "Entry", "entry_dir", "read_entry", "status", "strip_png_metadata",
           "record", "commit", "read_all"]

SMALL_FILES = ("args.json", "results.json", "metrics.jsonl", "metrics.json", "confusion_matrix.csv", "losses.jsonl",
               "samples_spectra.png", "robustness.json", "robustness.png")
DEFAULT_ROOT = REPO / "results" / "runs"


@dataclass(frozen=True)
class Entry:
    id: str
    path: Path
    run: dict                    # run.json
    status: str                  # current | stale | unplanned
    reason: str = ""             # why stale


def entry_dir(root: Path, profile: str, job_id: str) -> Path:
    return Path(root) / profile / job_id


def read_entry(root: Path, profile: str, job_id: str) -> Optional[dict]:
    return read_json(entry_dir(root, profile, job_id) / "run.json")


def status(job: Job, run: Optional[dict], release: Optional[dict] = None) -> tuple:
    """``(status, reason)`` of a planned job: ``done``, ``pending`` or ``stale`` (code or settings changed).

    The code is the working tree's, or the ``release`` manifest's when one is given."""
    if run is None:
        return "pending", ""
    if run.get("spec") != job.spec():
        return "stale", "settings"
    want = release_fingerprint(job.scripts, release)[0] if release else fingerprint(job.scripts)[0]
    if run.get("fingerprint") != want:
        return "stale", "code"
    return "done", ""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = {b"tEXt", b"iTXt", b"zTXt", b"tIME"}


def strip_png_metadata(data: bytes) -> bytes:
    """The PNG without its text and time chunks (software version, date): same pixels, same bytes on any machine."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out, i = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while i < len(data):
        length = int.from_bytes(data[i:i + 4], "big")
        end = i + 12 + length                    # length, type, data, crc
        if end > len(data):
            raise ValueError("truncated PNG file")
        if data[i + 4:i + 8] not in _PNG_METADATA:
            out.append(data[i:end])
        i = end
    return b"".join(out)


def record(root: Path, profile: str, job: Job, work_job: Path, run: dict) -> Path:
    """Copy the small files of a finished job from its work folder into its (new) ledger entry."""
    dest = entry_dir(root, profile, job.id)
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for step in job.steps:
        for name in SMALL_FILES:
            src = Path(work_job) / step.name / name
            if src.is_file():
                (tmp / step.name).mkdir(parents=True, exist_ok=True)
                if name.endswith(".png"):
                    (tmp / step.name / name).write_bytes(strip_png_metadata(src.read_bytes()))
                else:
                    shutil.copyfile(src, tmp / step.name / name)
    write_json(tmp / "run.json", run)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def commit(path: Path, message: str, tries: int = 5) -> None:
    """Commit exactly ``path`` (another engineer's staged work stays staged and out of this commit)."""
    rel = str(Path(path).resolve().relative_to(REPO))
    for attempt in range(tries):
        add = subprocess.run(["git", "add", "--all", "--", rel], cwd=REPO, capture_output=True, text=True)
        if add.returncode == 0 and subprocess.run(["git", "diff", "--cached", "--quiet", "--", rel],
                                                  cwd=REPO).returncode == 0:
            return                   # the entry was recorded before, byte for byte
        ci = add if add.returncode else subprocess.run(
            ["git", "commit", "--quiet", "-m", message, "--", rel], cwd=REPO, capture_output=True, text=True)
        if ci.returncode == 0:
            return
        if "index.lock" not in ci.stderr or attempt == tries - 1:   # another git command holds the index
            raise RuntimeError(f"git could not commit {rel}: {ci.stderr.strip() or ci.stdout.strip()}")
        time.sleep(2 + 2 * attempt)


def read_all(root: Path, profile: str, jobs: list, release: Optional[dict] = None) -> list:
    """Every entry of ``profile`` in the ledger, planned jobs first in plan order, then the unplanned ones
    (status against the working tree's code, or ``release``'s)."""
    base = Path(root) / profile
    by_id = {j.id: j for j in jobs}
    found = [p.parent.relative_to(base).as_posix() for p in base.glob("**/run.json")] if base.is_dir() else []
    found = [i for i in found if not any(part.startswith(".") for part in i.split("/"))]  # half-recorded
    order = {j.id: i for i, j in enumerate(jobs)}
    found.sort(key=lambda i: (order.get(i, len(order)), i))
    out = []
    for job_id in found:
        run = read_json(base / job_id / "run.json")
        if job_id in by_id:
            st, reason = status(by_id[job_id], run, release)
            st = "current" if st == "done" else st
        else:
            st, reason = "unplanned", "not in the profile's plan"
        out.append(Entry(job_id, base / job_id, run, st, reason))
    return out
