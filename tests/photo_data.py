"""Tiny datasets of real photographs for the tests, in the layout of the shared archives.

The images are crops of scikit-image's bundled sample photographs, so the same zips are built on
every machine, with or without ``../shared/data``. ``run_experiments.py --profile smoke`` uses
them too, as its pipeline-check data.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np

from toolkit.data import CLASS_NAMES, SPLITS_CSV
from toolkit.io_utils import atomic_write

__all__ = ["make_test_dataset"]


_SKIMAGE_BASES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "moon", "page", "text",
                  "coins", "clock", "brick", "grass", "gravel", "cat", "immunohistochemistry", "colorwheel")
_KIND_LAYOUT = {  # splits, classes
    "cifar10": (("train", "test"), ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                    "horse", "ship", "truck"]),
    "imagenette": (("train", "val"), ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                                      "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]),
    "celeba": (("train",), ["faces"]),
}


def _jpeg_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _sample_photo(name: str):
    from PIL import Image
    import skimage.data
    base = getattr(skimage.data, name)()
    return Image.fromarray(base if base.dtype == np.uint8 else (base * 255).astype(np.uint8))


def _photo_crop(cls: int, j: int, w: int, h: int):
    """A real photograph crop (scikit-image samples), different per class and per index."""
    from PIL import Image
    img = _sample_photo(_SKIMAGE_BASES[cls % len(_SKIMAGE_BASES)])
    rng = random.Random(1000 * cls + j)
    bw, bh = img.size
    cw, ch = rng.randint(bw // 3, bw // 2), rng.randint(bh // 3, bh // 2)
    x0, y0 = rng.randint(0, bw - cw), rng.randint(0, bh - ch)
    img = img.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.choice((0, 90, 180, 270)), expand=True)
    if cls >= len(_SKIMAGE_BASES):  # more classes than sample images: vary them by flipping
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img.resize((w, h), Image.BILINEAR)


def _flowers_entries(n_per_class: int, w: int, h: int) -> list:
    """Flowers102's layout: ``<split>/<label>/image_<id>.jpg``, the splits CSV and ``cat_to_name.json``."""
    entries, rows, image_id = [], io.StringIO(), 0
    wr = csv.DictWriter(rows, fieldnames=["path", "image_id", "label", "official_split"])
    wr.writeheader()
    for s in ("train", "val", "test"):
        for label in range(1, 103):
            for _ in range(n_per_class):
                image_id += 1
                p = f"{s}/{label}/image_{image_id:05d}.jpg"
                entries.append((p, _jpeg_bytes(_photo_crop(label - 1, image_id, w, h))))
                wr.writerow({"path": p, "image_id": image_id, "label": label, "official_split": s})
    names = {str(label): f"flower {label}" for label in range(1, 103)}
    return entries + [(SPLITS_CSV, rows.getvalue().encode()), (CLASS_NAMES, json.dumps(names).encode())]


def make_test_dataset(kind: str, dest, *, n_per_class: int, image_size: int) -> Path:
    """Write a tiny dataset of real photographs as a zip in the layout of the shared archives.

    The images are crops of scikit-image's bundled sample photographs, so the same zip is built on
    every machine, with or without ``../shared/data``.

    Parameters
    ----------
    kind : ``"cifar10"``, ``"imagenette"``, ``"celeba"`` (one class, each image from another
        photograph), or ``"flowers102"`` (``n_per_class`` images per class in each official split,
        with ``flowers102_splits.csv`` and ``cat_to_name.json``; images 4:3, to exercise the crop)
    dest : the zip to write
    n_per_class : images per class and split
    image_size : side of the (square) images in pixels

    Returns
    -------
    Path of the zip.
    """
    dest = Path(dest)
    if kind == "flowers102":
        entries = _flowers_entries(n_per_class, image_size, image_size * 4 // 3)
    elif kind in _KIND_LAYOUT:
        splits, classes = _KIND_LAYOUT[kind]
        entries = []
        for si, s in enumerate(splits):
            for ci, c in enumerate(classes):
                for j in range(n_per_class):
                    # One class (CelebA): vary the photograph with the index instead of the class.
                    photo = j if len(classes) == 1 else ci
                    img = _photo_crop(photo, 100 * si + j, image_size, image_size)
                    entries.append((f"{s}/{c}/{j:04d}.jpg", _jpeg_bytes(img)))
    else:
        raise ValueError(f"unknown test dataset kind {kind!r}; choose cifar10, imagenette, celeba or flowers102")

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for p, b in entries:
                # a fixed timestamp: the same zip, byte for byte, on every build
                z.writestr(zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0)), b)
    atomic_write(dest, write)
    return dest
