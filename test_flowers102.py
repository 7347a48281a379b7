"""Evaluate a Flowers102 checkpoint (train_flowers102.py / train_aug_flowers102.py) on the official 'train' split.

    python test_flowers102.py --checkpoint runs/flowers/checkpoint.pt --data-dir ../shared/data/flowers102.zip
"""
from classify import test_cli
from train_flowers102 import DEFAULTS

if __name__ == "__main__":
    test_cli(DEFAULTS)
