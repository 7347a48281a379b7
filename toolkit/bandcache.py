"""Disk cache of spectral TV components of a whole image set, built once with :func:`pock.spectral`.

The spectral augmentation ``w = f + sum_j (k_j - 1) phi_j`` needs the bands ``phi_j`` of every
training image. They depend only on the image and the decomposition's parameters, never on the
random gains, so each image is decomposed once and the bands are stored; per batch the
augmentation is then one cheap tensor op (:func:`pock.amplify_bands`) with fresh gains.

Layout of ``cache_dir/<key>/``:

* ``meta.json``   what the cache holds and everything the key was computed from;
* ``data.bin``    the finished array, raw (N, K, C, H, W) in ``dtype``, memory-mapped on load;
* ``data.partial`` + ``done.bin`` while building: the array being filled and one byte per chunk
  (1 = written and flushed), so an interrupted build continues from its finished chunks. The
  partial file becomes ``data.bin`` by an atomic rename once every chunk is done.

The key is a hash of the images' bytes, ``data_key``, the components, ``lam``, ``N``, ``tol``,
``vectorial``, ``dtype``, and the syntax trees of ``pock.py``, ``pock_cpu.py`` and of this file
(:func:`toolkit.fingerprint.file_digest`, which ignores comments and docstrings): anything that
changes the numbers gives another key, so a cache that does not match is rebuilt, never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

import pock
import pock_cpu
from toolkit.data import to_unit_range
from toolkit.fingerprint import file_digest
from toolkit.io_utils import exclusive_lock, write_json

__all__ = ["load_or_build", "cache_key", "cache_info", "parse_components", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_NP_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def parse_components(components: Sequence[str]):
    """Check component names and return ``(N, [(kind, n)])``: N is the decomposition depth needed.

    ``"phi{n}"`` is band n (1-based), ``"u{n}"`` the TV-flow state n (``u0`` the image) and
    ``"residual"`` the residual after the largest band requested (after band 1 if none is).
    """
    parsed = []
    for c in components:
        m = re.fullmatch(r"(phi|u)(\d+)|residual", str(c))
        if not m or (m.group(1) == "phi" and int(m.group(2)) < 1):
            raise ValueError(f"unknown band-cache component {c!r}; use 'phi<n>' (n >= 1), 'u<n>' or 'residual'")
        parsed.append(("residual", 0) if c == "residual" else (m.group(1), int(m.group(2))))
    if not parsed:
        raise ValueError("band cache needs at least one component")
    phis = [n for k, n in parsed if k == "phi"]
    us = [n for k, n in parsed if k == "u"]
    # spectral(N) holds u_0..u_{N+1}, phi_1..phi_N; phi_n does not depend on N.
    N = max(phis) if phis else max([1] + [n - 1 for n in us])
    return N, parsed


def _code_digest(path) -> str:
    # Any change of the solver's code may change the numbers; its comments and docstrings cannot, so the
    # key follows the syntax tree, as the experiment ledger's fingerprint does.
    return file_digest(Path(path).resolve())[:16]


def _images_digest(images: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images.cpu().numpy()).data)
    return h.hexdigest()


def cache_key(images_uint8: torch.Tensor, *, lam, components, tol, vectorial, dtype, data_key) -> dict:
    """Everything the cached numbers depend on (``meta.json`` stores it; its hash names the folder)."""
    N, _ = parse_components(components)
    return {
        "format": FORMAT_VERSION,
        "images": _images_digest(images_uint8),
        "shape": list(images_uint8.shape),
        "data_key": str(data_key),
        "components": [str(c) for c in components],
        "N": N, "lam": float(lam), "tol": None if tol is None else float(tol), "vectorial": bool(vectorial),
        "dtype": str(dtype).replace("torch.", ""),
        "pock": _code_digest(pock.__file__),
        "pock_cpu": _code_digest(pock_cpu.__file__),
        "bandcache": _code_digest(__file__),
    }


def _dist():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier():
    if _dist()[1] > 1:
        torch.distributed.barrier()


def _compute(batch_u8: torch.Tensor, N: int, parsed, lam, tol, vectorial, device) -> torch.Tensor:
    f = to_unit_range(batch_u8.to(device))
    dec = pock.spectral(f, N=N, lam=lam, tol=tol, vectorial=vectorial)
    out = []
    for kind, n in parsed:
        if kind == "phi":
            out.append(dec.phi[:, n - 1])
        elif kind == "u":
            out.append(dec.u[:, n])
        else:
            out.append(dec.residual)
    return torch.stack(out, dim=1)


@dataclass
class _Build:
    """One cache folder and what it must hold."""
    folder: Path
    key: dict
    shape: tuple
    np_dtype: type

    @property
    def final(self) -> Path:
        return self.folder / "data.bin"

    @property
    def partial(self) -> Path:
        return self.folder / "data.partial"

    @property
    def done_file(self) -> Path:
        return self.folder / "done.bin"

    @property
    def meta_file(self) -> Path:
        return self.folder / "meta.json"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.np_dtype).itemsize

    def meta(self):
        """meta.json, or None when it is missing or unreadable (the folder is then rebuilt)."""
        try:
            return json.loads(self.meta_file.read_text())
        except (OSError, ValueError):
            return None

    def finished(self) -> bool:
        meta = self.meta()
        return (meta is not None and meta.get("key") == self.key and bool(meta.get("complete"))
                and self.final.exists() and self.final.stat().st_size == self.nbytes)

    def prepare(self, chunk: int) -> None:
        """Rank 0: keep a resumable partial build of this key, else start afresh with empty files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.meta()
        if (meta is not None and meta.get("key") == self.key and self.partial.exists() and self.done_file.exists()
                and self.partial.stat().st_size == self.nbytes):
            return
        # Anything else in this folder is stale or foreign.
        for p in (self.final, self.partial, self.done_file):
            if p.exists():
                p.unlink()
        with open(self.partial, "wb") as fh:
            fh.truncate(self.nbytes)
        with open(self.done_file, "wb") as fh:
            fh.write(bytes(-(-self.shape[0] // chunk)))
        write_json(self.meta_file, {"key": self.key, "shape": list(self.shape), "chunk": chunk, "complete": False})


def _fill(b: _Build, images_uint8, N, parsed, lam, tol, vectorial, device, dtype, progress) -> dict:
    """Compute this rank's unfinished chunks into the partial file; returns build statistics."""
    rank, world = _dist()
    meta = b.meta()
    chunk, n_img = int(meta["chunk"]), b.shape[0]
    n_chunks = -(-n_img // chunk)
    arr = np.memmap(b.partial, dtype=b.np_dtype, mode="r+", shape=b.shape)
    done = np.memmap(b.done_file, dtype=np.uint8, mode="r+", shape=(n_chunks,))
    mine = [c for c in range(n_chunks) if c % world == rank and not done[c]]
    from tqdm import tqdm
    bar = tqdm(total=n_img, initial=min(n_img, int(done.sum()) * chunk), desc=f"band cache {b.folder.name[:8]}",
               unit="img", disable=not progress or rank != 0, mininterval=1.0)
    t0 = time.perf_counter()
    n_built = 0
    for c in mine:
        lo, hi = c * chunk, min(n_img, (c + 1) * chunk)
        comp = _compute(images_uint8[lo:hi], N, parsed, lam, tol, vectorial, device)
        arr[lo:hi] = comp.to("cpu", dtype).numpy()
        arr.flush()
        # Mark the chunk only after its data reached the file: a crash in between redoes it.
        done[c] = 1
        done.flush()
        n_built += hi - lo
        bar.update(min((hi - lo) * world, n_img - bar.n))
    bar.close()
    seconds = time.perf_counter() - t0
    return dict(build_seconds=round(seconds, 3), device=str(device), world_size=world,
                images_per_second_per_rank=round(n_built / max(seconds, 1e-9), 2))


def _build(b: _Build, images_uint8, N, parsed, lam, tol, vectorial, device, batch_size, dtype, progress) -> None:
    """Build (or finish) the cache; every rank takes part, rank 0 publishes ``data.bin``."""
    rank, _ = _dist()
    if rank == 0:
        b.prepare(int(batch_size))
    _barrier()
    stats = _fill(b, images_uint8, N, parsed, lam, tol, vectorial, device, dtype, progress)
    _barrier()
    if rank == 0:
        done = np.fromfile(b.done_file, dtype=np.uint8)
        if not done.all():
            raise RuntimeError(f"band cache {b.folder}: {int((done == 0).sum())} chunks missing after build")
        os.replace(b.partial, b.final)
        b.done_file.unlink()
        write_json(b.meta_file, {**b.meta(), "complete": True, **stats})
    _barrier()


def load_or_build(images_uint8: torch.Tensor, *, cache_dir, lam: float = 7.0,
                  components: Sequence[str] = ("phi1", "phi2"), tol: Optional[float] = None,
                  vectorial: bool = False, device="cpu", batch_size: int = 4096,
                  dtype: torch.dtype = torch.float16, data_key: str = "",
                  progress: bool = True) -> torch.Tensor:
    """Spectral components of every image, shape (N, K, C, H, W), from the cache or built now.

    Parameters
    ----------
    images_uint8 : (N, C, H, W) uint8 images; decomposed on the [-1, 1] scale (:func:`data.to_unit_range`)
    cache_dir : folder holding one sub-folder per cache key
    lam, tol, vectorial : passed to :func:`pock.spectral`
    components : names, see :func:`parse_components`
    device : where the decomposition runs (the result always lives on the CPU, memory-mapped)
    batch_size : images per :func:`pock.spectral` call, and per resumable chunk
    dtype : storage type (float16 halves the size; band values are O(1) on the [-1, 1] scale)
    data_key : a description of the data (its source), added to the key

    Under ``torch.distributed`` every rank must call this together: rank r builds chunks
    r, r + world, ...; all ranks return the same memory-mapped array.

    Returns
    -------
    Tensor (N, K, C, H, W) of ``dtype``, memory-mapped read-only from ``data.bin`` (copy-on-write).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images_uint8.dtype} "
                         f"{tuple(images_uint8.shape)}")
    if dtype not in _NP_DTYPES:
        raise ValueError(f"dtype must be one of {list(_NP_DTYPES)}, got {dtype}")
    N, parsed = parse_components(components)
    key = cache_key(images_uint8, lam=lam, components=components, tol=tol, vectorial=vectorial,
                    dtype=dtype, data_key=data_key)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    b = _Build(Path(cache_dir) / digest, key, (images_uint8.shape[0], len(parsed)) + tuple(images_uint8.shape[1:]),
               _NP_DTYPES[dtype])
    build = (b, images_uint8, N, parsed, lam, tol, vectorial, device, batch_size, dtype, progress)
    if not b.finished():
        if _dist()[1] == 1:
            # Independent processes (two runs started together) must not build the same cache at
            # once; the second waits, then finds it finished or resumes what is left.
            b.folder.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(b.folder / "build.lock"):
                if not b.finished():
                    _build(*build)
        else:
            _build(*build)
    return torch.from_numpy(np.memmap(b.final, dtype=b.np_dtype, mode="c", shape=b.shape))


def cache_info(cache_dir) -> list:
    """The ``meta.json`` of every cache under ``cache_dir`` (build times, keys), for reports."""
    out = []
    for m in sorted(Path(cache_dir).glob("*/meta.json")):
        try:
            out.append(json.loads(m.read_text()))
        except (OSError, ValueError):
            continue
    return out
