"""Train ResNet-18 on grayscale CIFAR-10 with spectral TV augmentation (bands 1-2 x [3, 5), lam 7).

Each batch is trained together with its augmented copy (the dissertation's scheme); the bands
are decomposed once and cached (``--cache-dir``), ``--no-cache`` decomposes every batch instead.

    python train_pt_aug.py --data-dir ../shared/data/cifar10.zip --output-dir runs/cifar10-aug
"""
from classify import train_cli
from train_pt import DEFAULTS as PLAIN

DEFAULTS = dict(PLAIN, epochs=10, lam=7.0, bands="1,2", gains="3,5")

if __name__ == "__main__":
    train_cli(DEFAULTS, spectral=True)
