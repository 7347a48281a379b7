"""Evaluate an Imagenette checkpoint (train_imagenette.py / train_aug_imagenette.py) on the 'val' split.

    python test_imagenette.py --checkpoint runs/imagenette/checkpoint.pt --data-dir ../shared/data/imagenette.zip
"""
from classify import test_cli
from train_imagenette import DEFAULTS

if __name__ == "__main__":
    test_cli(DEFAULTS)
