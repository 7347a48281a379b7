"""Train ResNet-18 on grayscale CIFAR-10 with spectral TV augmentation (bands 1-2 x [3, 5), lam 7).

Each batch is trained together with its augmented copy (the dissertation's scheme); the bands
are decomposed once and cached (``--cache-dir``), ``--no-cache`` decomposes every batch instead.

    python train_pt_aug.py --data-dir ../shared/data/cifar10.zip --output-dir runs/cifar10-aug
"""
from toolkit import cli
from toolkit.classify import get_train_parser
from toolkit.classify import train as main


def get_args_parser():
    return get_train_parser("cifar10-aug", prog="train_pt_aug.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
