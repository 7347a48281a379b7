"""Train ResNet-18 on grayscale Imagenette (no spectral augmentation).

    python train_imagenette.py --data-dir ../shared/data/imagenette.zip --output-dir runs/imagenette
"""
import cli
from classify import get_train_parser
from classify import train as main


def get_args_parser():
    return get_train_parser("imagenette", prog="train_imagenette.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
