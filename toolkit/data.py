"""Image datasets as in-memory uint8 tensors, decoded once.

Every dataset the toolkit uses (CIFAR-10, Flowers102, Imagenette, CelebA, or any folder of
images) comes out of :func:`load_images` as an :class:`ImageSet`: a ``(N, C, H, W)`` uint8
tensor with its labels. JPEG decoding, resizing and the grayscale conversion happen once; the
result is cached on disk, keyed by a hash of the source files and the options, so later runs and
every training epoch read tensors, never JPEGs (airbench-style: augmentation then is batched
tensor ops).

Sources
-------
* ``data_dir=None``: torchvision's own dataset classes download the data (the default online).
* ``data_dir`` a folder or a ``.zip`` in ImageFolder layout with split folders,
  ``<split>/<class>/<image>``, e.g. the archives in ``../shared/data``. A zip may also wrap that
  layout in one top-level folder. For Flowers102, a ``flowers102_splits.csv`` (columns
  ``path,image_id,label,official_split``) at the top overrides the folders, so that the official
  splits ``train``/``val``/``test`` and labels ``1..102`` (returned as ``0..101``) are used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from toolkit.errors import DataError
from toolkit.io_utils import atomic_write

__all__ = ["DataError", "ImageSet", "load_images", "subset_indices", "to_unit_range", "from_unit_range",
           "DATASETS", "IMAGE_EXTENSIONS", "SPLITS_CSV", "CLASS_NAMES"]

DATASETS = ("cifar10", "flowers102", "imagenette", "celeba", "folder")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# Bump when the decoding changes, so that cached decodes made by older code are not reused.
DECODE_VERSION = 1
SPLITS_CSV = "flowers102_splits.csv"
CLASS_NAMES = "cat_to_name.json"
# torchvision's split names per dataset (used when downloading).
TORCHVISION_SPLITS = {
    "cifar10": ("train", "test"),
    "flowers102": ("train", "val", "test"),
    "imagenette": ("train", "val"),
    "celeba": ("train", "valid", "test", "all"),
}


@dataclass
class ImageSet:
    """A decoded dataset split.

    Attributes
    ----------
    images : uint8 tensor (N, C, H, W)
    labels : int64 tensor (N,)
    classes : class names, ``classes[label]``
    source : where it came from and the hash of the decode options (used as a cache key)
    """
    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    source: str

    def __len__(self) -> int:
        return self.images.shape[0]


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels ``0..255`` to float32 in ``[-1, 1]`` (``x / 127.5 - 1``, i.e. Normalize(0.5, 0.5))."""
    return x.to(torch.float32) / 127.5 - 1.0


def from_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_unit_range`, rounded and clipped to uint8."""
    return ((x.to(torch.float32) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------ sources
# A source lists (key, label) items of one split and opens an item's bytes; keys are paths
# inside the folder or zip, so that an error can name the bad file.

@dataclass
class _Listing:
    items: list          # [(key, label)]
    classes: list
    open_bytes: Callable[[str], bytes]
    fingerprint: str     # identifies the source files' content (for the decode cache)
    where: str           # the path, for messages


def _natural_key(name: str):
    # Flowers102 class folders are 1..102: sort them as numbers, not as strings ("1, 10, 100, ...").
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class _Tree:
    """A folder or a zip seen as a set of relative file paths with byte access."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise DataError(f"{path}: no such file or folder; pass --data-dir a folder or .zip in "
                            f"ImageFolder layout (<split>/<class>/<image>), or omit it to download the dataset")
        if path.is_dir():
            self.zip = None
            files = []
            for root, _, names in os.walk(path):
                for n in names:
                    files.append(os.path.relpath(os.path.join(root, n), path).replace(os.sep, "/"))
            self.files = sorted(files)
            stats = [(f, os.stat(path / f).st_size, os.stat(path / f).st_mtime_ns) for f in self.files]
            self.fingerprint = _digest(["dir", str(path.resolve()), stats])
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{path}: not a readable zip archive ({e}); re-download or re-create it") from None
            infos = [i for i in self.zip.infolist() if not i.is_dir()]
            self.files = sorted(i.filename for i in infos)
            # The central directory's CRCs identify the content without reading it.
            self.fingerprint = _digest(["zip", sorted((i.filename, i.CRC, i.file_size) for i in infos)])
        self.prefix = ""
        if not any(_is_image(f) for f in self.files):
            raise DataError(f"{path}: holds no image files ({', '.join(IMAGE_EXTENSIONS[:3])}, ...); "
                            f"point --data-dir at a dataset in ImageFolder layout (<split>/<class>/<image>)")

    def read(self, rel: str) -> bytes:
        full = self.prefix + rel
        try:
            if self.zip is not None:
                return self.zip.read(full)
            return (self.path / full).read_bytes()
        # zlib/CRC failures surface as BadZipFile or RuntimeError
        except (OSError, KeyError, zipfile.BadZipFile, EOFError, RuntimeError) as e:
            raise DataError(f"{self.path}: cannot read {full} ({e}); replace or remove that file") from None

    def has(self, rel: str) -> bool:
        return (self.prefix + rel) in self._fileset()

    def _fileset(self):
        if not hasattr(self, "_set"):
            self._set = set(self.files)
        return self._set

    def top_dirs(self) -> list:
        return sorted({f[len(self.prefix):].split("/", 1)[0] for f in self.files
                       if f.startswith(self.prefix) and "/" in f[len(self.prefix):]})

    def unwrap(self, split: str) -> None:
        """Accept a single wrapping folder (``cifar10/train/...``) around the split folders."""
        while split not in self.top_dirs():
            rel = [f[len(self.prefix):] for f in self.files if f.startswith(self.prefix)]
            top_files = [r for r in rel if "/" not in r and _is_image(r)]
            dirs = self.top_dirs()
            if len(dirs) == 1 and not top_files and not self.has(SPLITS_CSV):
                inner = dirs[0] + "/"
                # Stop when the single folder is itself a split (it holds class folders of images).
                sub = {r[len(inner):].split("/", 1)[0] for r in rel if r.startswith(inner) and r.count("/") >= 2}
                deeper = [r for r in rel if r.startswith(inner) and r.count("/") >= 3]
                if sub and deeper:
                    self.prefix += inner
                    continue
            return


def _folder_listing(tree: _Tree, split: str) -> _Listing:
    splits = tree.top_dirs()
    if split not in splits:
        if not splits:
            raise DataError(f"{tree.path}: expected split folders (<split>/<class>/<image>), found images at "
                            f"the top level; move them into e.g. train/<class>/")
        raise DataError(f"{tree.path}: unknown split '{split}'; this dataset has splits {', '.join(splits)}")
    pre = tree.prefix + split + "/"
    by_class: dict = {}
    loose = []
    for f in tree.files:
        if not f.startswith(pre) or not _is_image(f):
            continue
        rel = f[len(pre):]
        if "/" not in rel:
            loose.append(rel)
            continue
        by_class.setdefault(rel.split("/", 1)[0], []).append(f[len(tree.prefix):])
    if not by_class:
        hint = (f"found {len(loose)} images directly in '{split}/'; put them in class folders "
                f"{split}/<class>/<image>") if loose else f"split folder '{split}/' holds no images"
        raise DataError(f"{tree.path}: {hint}")
    classes = sorted(by_class, key=_natural_key)
    items = [(rel, ci) for ci, c in enumerate(classes) for rel in sorted(by_class[c])]
    return _Listing(items, classes, tree.read, _digest([tree.fingerprint, tree.prefix, split]), str(tree.path))


def _flowers_csv_listing(tree: _Tree, split: str) -> _Listing:
    text = tree.read(SPLITS_CSV).decode("utf-8", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    need = {"path", "label", "official_split"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{tree.path}: {SPLITS_CSV} must have columns path,image_id,label,official_split; "
                        f"fix or delete it")
    splits = sorted({r["official_split"] for r in rows})
    if split not in splits:
        raise DataError(f"{tree.path}: unknown split '{split}'; {SPLITS_CSV} lists official splits "
                        f"{', '.join(splits)}")
    names = _class_names(tree) if tree.has(CLASS_NAMES) else {}
    try:
        labels = sorted({int(r["label"]) for r in rows})
    except ValueError:
        raise DataError(f"{tree.path}: {SPLITS_CSV} has a non-integer label; fix or delete it") from None
    # Official Oxford labels are 1..102; torchvision's Flowers102 uses label - 1.
    n_classes = max(labels)
    classes = [names.get(str(i), str(i)) for i in range(1, n_classes + 1)]
    items = []
    for r in rows:
        if r["official_split"] != split:
            continue
        if not tree.has(r["path"]):
            raise DataError(f"{tree.path}: {SPLITS_CSV} lists {r['path']}, which is missing; "
                            f"restore the file or the archive")
        items.append((r["path"], int(r["label"]) - 1))
    items.sort()
    return _Listing(items, classes, tree.read, _digest([tree.fingerprint, tree.prefix, "csv", split]),
                    str(tree.path))


def _class_names(tree: _Tree) -> dict:
    """Flowers102's ``cat_to_name.json``: {"1": "pink primrose", ...}; a malformed file is an error."""
    try:
        names = json.loads(tree.read(CLASS_NAMES))
    except ValueError as e:
        raise DataError(f"{tree.path}: {CLASS_NAMES} is not valid JSON ({e}); fix or delete it") from None
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise DataError(f"{tree.path}: {CLASS_NAMES} must map label numbers to names, e.g. "
                        f'{{"1": "pink primrose"}}; fix or delete it')
    return names


def _local_listing(name: str, split: str, data_dir) -> _Listing:
    tree = _Tree(Path(data_dir).expanduser())
    tree.unwrap(split)
    if name == "flowers102" and tree.has(SPLITS_CSV):
        return _flowers_csv_listing(tree, split)
    return _folder_listing(tree, split)


def _torchvision_dataset(name: str, split: str, root: str):
    import torchvision.datasets as tvd
    if name == "folder":
        raise DataError("dataset 'folder' needs --data-dir (a folder or .zip in ImageFolder layout)")
    if split not in TORCHVISION_SPLITS[name]:
        raise DataError(f"unknown split '{split}' for {name}; torchvision's {name} has splits "
                        f"{', '.join(TORCHVISION_SPLITS[name])}")
    try:
        if name == "cifar10":
            return tvd.CIFAR10(root, train=(split == "train"), download=True)
        if name == "flowers102":
            return tvd.Flowers102(root, split=split, download=True)
        if name == "imagenette":
            return tvd.Imagenette(root, split=split, size="full", download=True)
        return tvd.CelebA(root, split=split, target_type="identity", download=True)
    except (OSError, RuntimeError, ValueError) as e:  # no network, broken download, ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"downloading {name} into {root} failed ({msg}); check the connection or pass "
                        f"--data-dir a local copy (e.g. ../shared/data/{name}.zip)") from None


def _torchvision_listing(name: str, split: str, root: str) -> _Listing:
    ds = _torchvision_dataset(name, split, root)
    if name == "celeba":
        classes = ["faces"]
        labels = [0] * len(ds)
    elif name == "cifar10":
        classes, labels = list(ds.classes), list(ds.targets)
    elif name == "flowers102":
        classes, labels = list(ds.classes), list(ds._labels)
    else:  # Imagenette: WordNet ids, as the class folders of a local copy
        classes, labels = list(ds.wnids), [t for _, t in ds._samples]
    items = [(str(i), int(lab)) for i, lab in enumerate(labels)]

    def open_image(key: str):
        return ds[int(key)][0]
    return _Listing(items, classes, open_image, _digest(["torchvision", name, split, len(ds)]), f"{root} ({name})")


# ----------------------------------------------------------------------------- decoding

def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _resize(img, size: int):
    """Exact resize for square images; otherwise shorter side to ``size`` then center crop."""
    from PIL import Image
    w, h = img.size
    if w == h:
        return img if w == size else img.resize((size, size), Image.BILINEAR)
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _decode_one(listing: _Listing, key: str, size: int, grayscale: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    raw = listing.open_bytes(key)
    try:
        if isinstance(raw, bytes):
            img = Image.open(io.BytesIO(raw))
            img.load()
        else:
            img = raw
        img = img.convert("L" if grayscale else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{listing.where}: image {key} is corrupt or not an image ({e}); "
                        f"replace or remove that file") from None
    arr = np.asarray(_resize(img, size), dtype=np.uint8)
    return arr[None] if grayscale else arr.transpose(2, 0, 1)


def load_images(name: str, split: str, *, data_dir=None, image_size: int, grayscale: bool = True,
                subset: Optional[int] = None, seed: int = 0, download_root: str = "./data",
                cache_dir: Optional[str] = "cache/decoded", workers: int = 0,
                progress: bool = True) -> ImageSet:
    """Decode one split of a dataset into memory (see the module docstring for the sources).

    Parameters
    ----------
    name : one of ``DATASETS``; ``"folder"`` is any ImageFolder dataset (needs ``data_dir``)
    split : split folder name (local data) or torchvision split name (download)
    data_dir : folder or .zip in ImageFolder layout; None downloads with torchvision into ``download_root``
    image_size : output side length in pixels (square images are resized, others resized on the
        shorter side and center-cropped)
    grayscale : one channel (ITU-R 601 luma, as torchvision's Grayscale) instead of RGB
    subset : keep this many images, drawn uniformly without replacement with ``seed``
        (only those are decoded); None keeps all
    cache_dir : where decoded sets are cached (None: no cache)
    workers : decoding threads (0: one)

    Raises
    ------
    DataError
        A missing, empty or corrupt path or image, an unknown split or a wrong layout.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
    if image_size < 1:
        raise DataError(f"--image-size must be positive, got {image_size}")
    if subset is not None and subset < 1:
        raise DataError(f"--subset must be positive, got {subset}")
    if data_dir is None:
        listing = _torchvision_listing(name, split, download_root)
    else:
        listing = _local_listing(name, split, data_dir)
    n_all = len(listing.items)
    if n_all == 0:
        raise DataError(f"{listing.where}: split '{split}' holds no images; check the dataset")
    idx = subset_indices(n_all, subset, seed)
    key = _digest([DECODE_VERSION, listing.fingerprint, name, split, image_size, grayscale, idx])
    source = f"{name}:{split}@{listing.where}#{key}"
    cache_file = Path(cache_dir) / f"{name}-{split}-{image_size}{'g' if grayscale else 'c'}-{key}.pt" \
        if cache_dir else None
    if cache_file is not None and cache_file.exists():
        cached = _read_decode_cache(cache_file, key)
        if cached is not None:
            return ImageSet(*cached, source)
    items = [listing.items[i] for i in idx]
    c = 1 if grayscale else 3
    images = np.empty((len(items), c, image_size, image_size), dtype=np.uint8)

    def work(i):
        images[i] = _decode_one(listing, items[i][0], image_size, grayscale)

    from tqdm import tqdm
    bar = tqdm(total=len(items), desc=f"decode {name}/{split}", unit="img", disable=not progress,
               leave=False, mininterval=1.0)
    if workers and workers > 1:
        # Pillow releases the GIL while decoding; zipfile serialises its reads with a lock.
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(work, range(len(items))):
                bar.update(1)
    else:
        for i in range(len(items)):
            work(i)
            bar.update(1)
    bar.close()
    result = ImageSet(torch.from_numpy(images), torch.tensor([lab for _, lab in items], dtype=torch.int64),
                      list(listing.classes), source)
    if cache_file is not None:
        try:
            blob = {"key": key, "images": result.images, "labels": result.labels, "classes": result.classes}
            atomic_write(cache_file, lambda tmp: torch.save(blob, tmp))
        except OSError as e:
            # Caching only saves time: warn and go on (read-only folder, full disk).
            print(f"warning: could not cache decoded images in {cache_file} ({e})")
    return result


def _read_decode_cache(path: Path, key: str) -> Optional[tuple]:
    """``(images, labels, classes)`` from a decode cache file, or None, saying why, when it is unusable.

    The file is then decoded again and replaced, which only costs time; the message names the file
    so that a cache that keeps breaking (a failing disk) can be found.
    """
    try:
        blob = torch.load(path, weights_only=True)
        if blob.get("key") == key:
            return blob["images"], blob["labels"], list(blob["classes"])
        why = f"it holds key {blob.get('key')!r}, not {key!r}"
    except (OSError, RuntimeError, EOFError, KeyError, AttributeError, ValueError) as e:
        why = f"it is damaged ({(str(e).strip().splitlines() or [type(e).__name__])[0][:120]})"
    print(f"note: decode cache {path} is unusable: {why}; decoding the images again and replacing it", flush=True)
    return None


def subset_indices(n: int, subset: Optional[int], seed: int) -> list:
    """``subset`` of ``range(n)`` drawn uniformly without replacement with ``seed``, sorted (all if None)."""
    if subset is None or subset >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), subset))
