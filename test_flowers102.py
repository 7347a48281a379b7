"""Evaluate a Flowers102 checkpoint (train_flowers102.py / train_aug_flowers102.py) on the official 'train' split.

    python test_flowers102.py --checkpoint runs/flowers/checkpoint.pt --data-dir ../shared/data/flowers102.zip
"""
from toolkit import cli
from toolkit.classify import get_test_parser
from toolkit.classify import test as main


def get_args_parser():
    return get_test_parser("flowers102", prog="test_flowers102.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
