"""Train ResNet-18 on grayscale CIFAR-10 (the dissertation's baseline, no spectral augmentation).

    python train_pt.py --data-dir ../shared/data/cifar10.zip --output-dir runs/cifar10
    python test_pt.py --checkpoint runs/cifar10/checkpoint.pt --data-dir ../shared/data/cifar10.zip

``python train_pt.py --help`` lists every flag; the values below are the dissertation's.
"""
from classify import train_cli

DEFAULTS = dict(
    dataset="cifar10", train_split="train", eval_split="test",
    image_size=32, subset=25_000,            # 32x32 grayscale, 25,000-image training subset
    epochs=20, batch_size=20, lr=1e-3,       # Adam
    hidden="256,128", dropout=0.5,           # head 512-256-128-10
)

if __name__ == "__main__":
    train_cli(DEFAULTS)
