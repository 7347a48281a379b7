"""Evaluate a CIFAR-10 checkpoint of train_pt.py / train_pt_aug.py on the test split.

    python test_pt.py --checkpoint runs/cifar10/checkpoint.pt --data-dir ../shared/data/cifar10.zip
"""
from classify import test_cli
from train_pt import DEFAULTS

if __name__ == "__main__":
    test_cli(DEFAULTS)
