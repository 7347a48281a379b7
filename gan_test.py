"""Evaluate GANs trained by gan.py against held-out real faces.

For each ``--run`` folder the trained generator draws ``--n-fake`` samples (from a fixed seed, batch norm on
batch statistics as in training; sampling leaves the generator unchanged),
which are compared with ``--n-real`` real faces the GANs never saw: the **last** ``--n-real`` images of the
split the runs trained on (gan.py trains on the first images and keeps its last ``--holdout`` out, so
``--n-real`` may not exceed any run's ``--holdout``). Metrics:

* SWD: sliced Wasserstein distance on 7x7 Laplacian-pyramid patches (Karras et al. 2018), per pyramid level
  and averaged, x1e3. Always computed; needs no downloaded network.
* Spectrum: the mean TV spectrum S(t_n) = ||phi_n||_1 per pixel of each band (pock.spectral, ``--spectrum-bands``
  bands at ``--lam``), and the relative L1 distance between the generated and the real mean spectra: does each
  scale carry as much energy as in real faces?
* FID and KID (torchmetrics), only with ``--inception-weights`` (the FID Inception file, e.g.
  pt_inception-2015-12-05-6726825d.pth) and the torch-fidelity package; otherwise reported as skipped, with why.

A "real (train)" row compares the first ``--n-real`` faces before the held-out ones (the training pool) with the
held-out ones: the value two
independent real samples give, i.e. the floor under which no generator can be told apart at this sample size.
``--floor-draws`` K repeats it on K disjoint draws of ``--n-real`` faces from the training pool, so that the floor
comes with its spread (``swd_floor`` in metrics.json: each draw's SWD avg, their mean and standard deviation).

For ``components`` runs the generated image is the u_0 generator's sample: the dissertation's recombination
phi_sum(1) + f_r(1) telescopes algebraically to u_0, so recombining the states adds nothing. ``--per-state``
also reports the SWD of each state's generator against the held-out faces' TV-flow state u_n.

Outputs in ``--output-dir``: ``metrics.json``, ``samples_spectra.png`` (real and generated samples side by side,
and their spectra); a Markdown table on the terminal.

Example::

    python gan_test.py --run runs/gan_plain --run runs/gan_components --run runs/gan_joint --n-real 1000
"""
from toolkit import cli
from toolkit.gan_driver import get_test_parser
from toolkit.gan_driver import test as main


def get_args_parser():
    return get_test_parser(prog="gan_test.py")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
