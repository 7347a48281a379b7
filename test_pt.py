"""Evaluate a CIFAR-10 checkpoint of train_pt.py / train_pt_aug.py on the test split.

    python test_pt.py --checkpoint runs/cifar10/checkpoint.pt --data-dir ../shared/data/cifar10.zip
"""
from toolkit import cli
from toolkit.classify import get_test_parser
from toolkit.classify import test as main


def get_args_parser():
    return get_test_parser("cifar10", prog="test_pt.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
