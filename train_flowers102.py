"""Train ResNet-18 on grayscale Flowers102 (no spectral augmentation).

As in the dissertation, training uses the official 'test' split (6,149 images, the largest) and
testing the official 'train' split. With the offline archive the official splits come from its
flowers102_splits.csv:

    python train_flowers102.py --data-dir ../shared/data/flowers102.zip --output-dir runs/flowers
"""
from classify import train_cli

DEFAULTS = dict(
    dataset="flowers102", train_split="test", eval_split="train",
    image_size=256, subset=6_000,            # 256x256 grayscale, 6,000 training images
    epochs=30, batch_size=20, lr=1e-3,
    hidden="256", dropout=0.5,               # head 512-256-102
)

if __name__ == "__main__":
    train_cli(DEFAULTS)
