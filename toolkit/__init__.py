"""The library under the entry points: everything the scripts share, and nothing a user runs directly.

Imports point down: the top-level scripts and ``experiments/`` import this package, this package
imports the engine (:mod:`pock`), and nothing here imports a script or ``experiments``.

Shared by every entry point
    * :mod:`toolkit.errors` — the error types, each a one-line message a user can act on;
    * :mod:`toolkit.cli` — the one-line error exit and the flags every script shares;
    * :mod:`toolkit.io_utils` — atomic files, JSON, figures, the git state recorded with results;
    * :mod:`toolkit.fingerprint` — the hash of the code a run executes (caches and staleness);
    * :mod:`toolkit.data` — image sets decoded once into uint8 tensors (folders, zips, torchvision);
    * :mod:`toolkit.bandcache` — the spectral TV bands of a whole image set, computed once, on disk;
    * :mod:`toolkit.checkpoints` — a run's folder and checkpoint, resumable and checked on load;
    * :mod:`toolkit.training` — the epoch loop on in-memory tensors, devices and DDP;
    * :mod:`toolkit.plots` — every figure, one function per kind.

Classification
    * :mod:`toolkit.configs` — the per-dataset defaults of the nine classifier scripts;
    * :mod:`toolkit.models` — ResNets with a grayscale stem and an MLP head;
    * :mod:`toolkit.unsharp` — the unsharp-mask control augmentation;
    * :mod:`toolkit.classify` — the train and test drivers behind the nine scripts.

GAN
    * :mod:`toolkit.gan_models` — DCGAN generator and discriminator;
    * :mod:`toolkit.gan_metrics` — sliced Wasserstein distance, TV spectra, FID/KID;
    * :mod:`toolkit.gan_common` — modes, data split, sampling, checkpoints and tables of the GANs;
    * :mod:`toolkit.gan_driver` — the train and test drivers behind ``gan.py`` and ``gan_test.py``.
"""
