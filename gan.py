"""Train DCGANs on grayscale faces, in the image domain or in the spectral TV domain.

Modes
-----
plain
    One DCGAN on the images (the baseline).
components
    The dissertation's scheme: one DCGAN per TV-flow state u_n (n = 0..N, default N = 3), trained one after
    another, each stage's generator and discriminator starting from the previous stage's weights. The
    dissertation then "recombines" the generated states as phi_sum(1) + f_r(1); that expression telescopes
    algebraically to u_0, so the generated image of this mode is the u_0 generator's sample, and the other
    stages influence it only through the weight initialisation (``--stage-order coarse-to-fine`` trains
    u_N first and u_0 last, which at least lets the coarser stages precede the image).
joint
    One DCGAN whose generator outputs the spectral bands phi_1..phi_K and the residual as channels; the image
    is their sum, so the reconstruction is exact. Its discriminator sees the image together with the bands.
    The real bands come from :func:`pock.spectral`, computed once per dataset and cached (bandcache).

Data: ``--data-dir`` is a folder or zip in ImageFolder layout (``../shared/data/celeba.zip`` holds 10,000 real
64x64 faces); without it torchvision's CelebA is downloaded. The last ``--holdout`` images of the split are
never trained on (gan_test.py measures against them); training uses the rest, or ``--subset`` of it drawn
with ``--seed``.

Budgets: an epoch is a pass over the training images with full batches. A stage ends after ``--epochs``
epochs or, when ``--max-steps`` is given, after its share of that many generator updates, whichever comes
first. ``--max-steps`` counts the generator updates of the whole run: in ``components`` mode it is split
evenly over the N+1 stages, so that all modes compare at the same total number of updates (``--epochs``
is then per stage and should be large enough not to stop a stage first).

Outputs in ``--output-dir``: ``args.json``, ``checkpoint.pt`` (both nets, both optimisers, AMP scalers,
RNG, fixed noise, the loss records; written atomically each epoch; ``--resume`` continues from it),
``samples_<stage>_e<epoch>.png`` from fixed noise (shared by all stages), for ``joint`` also
``bands_e<epoch>.png``, ``losses.jsonl`` and ``losses.png``.

Example::

    python gan.py --mode joint --data-dir ../shared/data/celeba.zip --epochs 5 --output-dir runs/gan_joint
"""
from toolkit import cli
from toolkit.gan_driver import get_train_parser
from toolkit.gan_driver import train as main


def get_args_parser():
    return get_train_parser(prog="gan.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
