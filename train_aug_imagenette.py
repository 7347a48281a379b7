"""Train ResNet-18 on grayscale Imagenette with spectral TV augmentation (bands 1-2 x [3, 5), lam 7).

    python train_aug_imagenette.py --data-dir ../shared/data/imagenette.zip --output-dir runs/imagenette-aug
"""
from classify import train_cli
from train_imagenette import DEFAULTS as PLAIN

DEFAULTS = dict(PLAIN, lam=7.0, bands="1,2", gains="3,5")

if __name__ == "__main__":
    train_cli(DEFAULTS, spectral=True)
