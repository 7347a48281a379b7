"""Train ResNet-18 on grayscale Imagenette (no spectral augmentation).

    python train_imagenette.py --data-dir ../shared/data/imagenette.zip --output-dir runs/imagenette
"""
from toolkit import cli
from toolkit.classify import get_train_parser
from toolkit.classify import train as main


def get_args_parser():
    return get_train_parser("imagenette", prog="train_imagenette.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
