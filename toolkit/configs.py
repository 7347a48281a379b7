"""The per-dataset defaults of the nine classification scripts, in one table.

Each train script names its entry (``train_pt.py`` is ``"cifar10"``, ``train_pt_aug.py`` is
``"cifar10-aug"``, ...); the test scripts name the plain entry of their dataset. The values are
the dissertation's. Every one of them is only a default: the scripts' flags override it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Config", "CONFIGS"]


@dataclass(frozen=True)
class Config:
    dataset: str
    train_split: str          # Flowers102 trains on its largest official split, 'test'
    eval_split: str
    image_size: int
    subset: int               # training images drawn from the train split (seeded by --seed)
    epochs: int
    hidden: str               # widths of the MLP head between ResNet-18's 512 features and the classes
    spectral: bool = False    # the augmented scripts: spectral TV augmentation
    # Shared by all nine scripts.
    arch: str = "resnet18"
    batch_size: int = 20
    lr: float = 1e-3          # Adam
    dropout: float = 0.5
    lam: float = 7.0          # spectral: 1/dt of the TV flow
    bands: str = "1,2"        # spectral: the bands amplified (1 = finest)
    gains: str = "3,5"        # spectral: integer gains drawn from [3, 5), i.e. 3 or 4


CONFIGS = {
    #                          dataset       train    eval     size  subset  epochs  head
    "cifar10":         Config("cifar10",     "train", "test",   32,  25_000,   20,   "256,128"),
    "cifar10-aug":     Config("cifar10",     "train", "test",   32,  25_000,   10,   "256,128", spectral=True),
    "flowers102":      Config("flowers102",  "test",  "train", 256,   6_000,   30,   "256"),
    "flowers102-aug":  Config("flowers102",  "test",  "train", 256,   6_000,   30,   "256", spectral=True),
    "imagenette":      Config("imagenette",  "train", "val",   256,   9_000,   15,   "256"),
    "imagenette-aug":  Config("imagenette",  "train", "val",   256,   9_000,   15,   "256", spectral=True),
}
