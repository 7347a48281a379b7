"""Slim copies of the local archives for a lent GPU machine, whose call carries at most 64 MiB.

``../shared`` does not travel to that machine, and CIFAR-10 plus Imagenette are 134 MiB. The GPU check
(``experiments/gpu_check.sh``) reads the splits ``bench_pock.py`` measures on, whole, so that its CUDA
numbers are on the same images as ``results/bench/bench_cpu.json``, plus the first images of each class
of CIFAR-10's training split for a short training run. The copies are byte for byte (same JPEG files,
same ImageFolder layout) in the git-ignored ``device_data/``::

    python -m experiments.device_data            # here, once; then run the check with carry ["device_data"]
"""

import argparse
import zipfile
from collections import defaultdict
from pathlib import Path

from toolkit import cli

# archive -> {split: images kept per class (None: all)}
KEEP = {"cifar10.zip": {"test": None, "train": 500}, "imagenette.zip": {"val": None}}


def slim(src: Path, dst: Path, keep: dict) -> int:
    """Copy the members of ``keep``'s splits from ``src`` to ``dst``, the first ``n`` per class by name."""
    per_class = defaultdict(int)
    written = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst.with_suffix(".tmp"), "w", zipfile.ZIP_STORED) as zout:
        for name in sorted(n for n in zin.namelist() if not n.endswith("/")):
            parts = name.split("/")
            if len(parts) != 3 or parts[0] not in keep:
                continue
            cap = keep[parts[0]]
            if cap is not None and per_class[parts[0], parts[1]] >= cap:
                continue
            per_class[parts[0], parts[1]] += 1
            zout.writestr(name, zin.read(name))   # JPEGs do not compress further
            written += 1
    dst.with_suffix(".tmp").replace(dst)
    return written


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("python -m experiments.device_data", __doc__.split("\n")[0])
    p.add_argument("--data-root", default="../shared/data", metavar="DIR",
                   help=f"folder holding the full archives {', '.join(KEEP)}")
    p.add_argument("--output-dir", default="device_data", metavar="DIR",
                   help="git-ignored folder that the GPU call carries")
    return p


def main(args) -> None:
    root, out = Path(args.data_root), Path(args.output_dir)
    for archive in KEEP:
        if not (root / archive).is_file():
            raise cli.UserError(f"{root / archive}: no such archive; pass --data-root the folder "
                                f"that holds {' and '.join(KEEP)}")
    out.mkdir(parents=True, exist_ok=True)
    for archive, keep in KEEP.items():
        n = slim(root / archive, out / archive, keep)
        size = (out / archive).stat().st_size / 2 ** 20
        print(f"{out / archive}: {n} images of {', '.join(keep)}, {size:.1f} MiB")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
