"""Train ResNet-18 on grayscale Imagenette with spectral TV augmentation (bands 1-2 x [3, 5), lam 7).

    python train_aug_imagenette.py --data-dir ../shared/data/imagenette.zip --output-dir runs/imagenette-aug
"""
from toolkit import cli
from toolkit.classify import get_train_parser
from toolkit.classify import train as main


def get_args_parser():
    return get_train_parser("imagenette-aug", prog="train_aug_imagenette.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
