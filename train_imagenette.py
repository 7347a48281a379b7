"""Train ResNet-18 on grayscale Imagenette (no spectral augmentation).

    python train_imagenette.py --data-dir ../shared/data/imagenette.zip --output-dir runs/imagenette
"""
from classify import train_cli

DEFAULTS = dict(
    dataset="imagenette", train_split="train", eval_split="val",
    image_size=256, subset=9_000,            # 256x256 grayscale, 9,000 training images
    epochs=15, batch_size=20, lr=1e-3,
    hidden="256", dropout=0.5,               # head 512-256-10
)

if __name__ == "__main__":
    train_cli(DEFAULTS)
