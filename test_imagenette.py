"""Evaluate an Imagenette checkpoint (train_imagenette.py / train_aug_imagenette.py) on the 'val' split.

    python test_imagenette.py --checkpoint runs/imagenette/checkpoint.pt --data-dir ../shared/data/imagenette.zip
"""
from toolkit import cli
from toolkit.classify import get_test_parser
from toolkit.classify import test as main


def get_args_parser():
    return get_test_parser("imagenette", prog="test_imagenette.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
