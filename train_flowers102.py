"""Train ResNet-18 on grayscale Flowers102 (no spectral augmentation).

As in the dissertation, training uses 6,000 images of the official 'test' split (6,149 images, the
largest) and testing the official 'train' split. With the offline archive the official splits come
from its flowers102_splits.csv:

    python train_flowers102.py --data-dir ../shared/data/flowers102.zip --output-dir runs/flowers
"""
from toolkit import cli
from toolkit.classify import get_train_parser
from toolkit.classify import train as main


def get_args_parser():
    return get_train_parser("flowers102", prog="train_flowers102.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
