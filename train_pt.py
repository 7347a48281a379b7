"""Train ResNet-18 on grayscale CIFAR-10 (the dissertation's baseline, no spectral augmentation).

    python train_pt.py --data-dir ../shared/data/cifar10.zip --output-dir runs/cifar10
    python test_pt.py --checkpoint runs/cifar10/checkpoint.pt --data-dir ../shared/data/cifar10.zip

``python train_pt.py --help`` lists every flag; the defaults are the ``"cifar10"`` entry of toolkit/configs.py.
"""
from toolkit import cli
from toolkit.classify import get_train_parser
from toolkit.classify import train as main


def get_args_parser():
    return get_train_parser("cifar10", prog="train_pt.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
