"""The command line shared by every entry point: the one-line error exit, list types, common and retired flags.

Scripts raise :class:`errors.UserError` (or a subclass) with a message that names the problem and
what to do; :func:`run` prints ``error: <message>`` to stderr and exits with status 2, with no
traceback. Anything else is a bug and keeps its traceback. A flag name means one thing in every
script (same type, arity and choices; ``tests/test_entry_points.py`` checks all parsers), and a
retired spelling fails with a pointer to its successor (:func:`renamed_flag`).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Optional, Sequence

from toolkit.errors import UserError

__all__ = ["UserError", "run", "renamed_flag", "removed_flag", "is_retired", "add_common_flags", "int_list", "add_output_dir",
           "make_parser", "COMMON_FLAGS", "TOL_FLAG", "POSITIVE", "POSITIVE_OR_NONE", "NON_NEGATIVE", "UNIT_INTERVAL",
           "HALF_OPEN_UNIT", "POWER_OF_TWO", "check_flags"]


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An entry point's parser; every option's help ends with its default."""
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def int_list(text: str) -> list:
    """An argparse type: ``"1,2"`` -> ``[1, 2]``; ``""`` or ``"none"`` -> ``[]``.

    A bad value is an ``argparse.ArgumentTypeError``, so the script stops with argparse's
    ``error: argument --flag: ...`` line instead of a traceback.
    """
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None



# The ranges :func:`check_flags` knows: (test, the words after "must be").
POSITIVE = (lambda v: v > 0, "positive")
POSITIVE_OR_NONE = (lambda v: v > 0, "positive (or left out)")
NON_NEGATIVE = (lambda v: v >= 0, "zero or more")
UNIT_INTERVAL = (lambda v: 0 <= v <= 1, "in [0, 1]")
HALF_OPEN_UNIT = (lambda v: 0 <= v < 1, "in [0, 1)")
POWER_OF_TWO = (lambda v: v >= 16 and not v & (v - 1), "a power of two >= 16")


def check_flags(args, rules: Sequence[tuple]) -> None:
    """Refuse the first flag of ``rules`` whose value is out of its range, before any work is done.

    ``rules`` holds ``(flag, range)`` pairs, ``range`` one of the constants above; the value is
    ``args.<flag as a destination>``. NaN and infinities are refused for every float (argparse's
    ``type=float`` accepts ``nan``, which then slips through every comparison), ``None`` only where the
    range says "or left out". The message names one flag: ``--lr must be positive, got 0.0``.
    """
    for flag, (ok, words) in rules:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is None and words.endswith("(or left out)"):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        if value is None or not ok(value):
            raise UserError(f"{flag} must be {words}, got {value}")

def run(main: Callable, parser, argv: Optional[Sequence[str]] = None):
    """Parse ``argv`` with ``parser``, call ``main(args)``; a :class:`UserError` exits 2 with one line."""
    args = parser.parse_args(argv)
    try:
        return main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def renamed_flag(parser, old: str, new: str, why: str = "") -> None:
    """Make ``old`` a flag that fails at parse time with a one-line message naming ``new``.

    The message is the same ``error: ...`` line as :func:`run`'s (no usage block), exit status 2.
    """
    class _Retired(argparse.Action):
        retired = True

        def __call__(self, p, namespace, values, option_string=None):
            msg = f"{old} is gone: use {new}" + (f" ({why})" if why else "") if new else f"{old} is gone: {why}"
            print(f"error: {msg}", file=sys.stderr)
            sys.exit(2)

    parser.add_argument(old, nargs="?", action=_Retired, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def is_retired(action: argparse.Action) -> bool:
    """Whether ``action`` is a retired spelling made by :func:`renamed_flag` or :func:`removed_flag`."""
    return getattr(action, "retired", False)


def removed_flag(parser, old: str, why: str) -> None:
    """Make ``old`` a flag that fails at parse time with ``old is gone: why``."""
    renamed_flag(parser, old, "", why)


# The flags that mean the same in every training script, classifiers and GANs alike (torchvision
# references' vocabulary); a script passes its own defaults.
COMMON_FLAGS = {
    "--data-dir": dict(default=None, metavar="PATH",
                       help="folder or .zip in ImageFolder layout <split>/<class>/<image>, e.g. {example}; "
                            "None: download with torchvision into --download-root"),
    "--output-dir": dict(metavar="DIR", help="the run's folder: args.json, checkpoint.pt, metrics and figures"),
    "--device": dict(default=None, help="cpu, cuda, cuda:1 ...; None: cuda when available"),
    "--seed": dict(type=int, default=0, help="seed of every random draw: initialisation, batches, augmentation "
                                             "or latent noise, and the --subset draw"),
    "--amp": dict(action="store_true", help="mixed precision (float16 autocast, CUDA only)"),
    "--resume": dict(nargs="?", const="", default=None, metavar="CHECKPOINT",
                     help="continue from CHECKPOINT (a checkpoint.pt or its run folder); "
                          "the flag alone: --output-dir/checkpoint.pt"),
    "--cache-dir": dict(default="cache", metavar="DIR", help="root of the caches: decoded images in <cache-dir>/decoded, "
                                              "spectral bands in <cache-dir>/bands"),
    "--subset": dict(type=int, default=None, metavar="N",
                     help="train on N images drawn at random with --seed; None: all"),
}


# --tol of every script that decomposes images (the augmented classifiers, gan.py, gan_test.py). None leaves
# the tolerance to pock.spectral, whose default is relative to each image's own scale.
TOL_FLAG = dict(type=float, default=None, metavar="GAP",
                help="absolute duality gap per pixel of the first TV-flow step; None: pock.spectral's scale-aware "
                     "tolerance (each image's steps solved relative to its own first flow step, bands within 2%%)")


def add_common_flags(parser, example: str, **defaults) -> None:
    """Add :data:`COMMON_FLAGS` to ``parser``; ``example`` is the ``--data-dir`` archive to name,
    ``defaults`` override defaults by destination (``output_dir="runs/gan"``). ``--no-amp`` is refused."""
    for flag, spec in COMMON_FLAGS.items():
        spec = dict(spec, help=spec["help"].format(example=example))
        dest = flag[2:].replace("-", "_")
        if dest in defaults:
            spec["default"] = defaults[dest]
        parser.add_argument(flag, **spec)
    renamed_flag(parser, "--no-amp", "--amp", "mixed precision is now opt-in")


def add_output_dir(parser, default, writes: str, extra: str = "") -> None:
    """``--output-dir DIR`` of a measuring tool that ``writes`` files named after DIR (e.g.
    "DIR/unsharp_matching.json"), with the retired ``--output FILE`` pointing to it."""
    parser.add_argument("--output-dir", default=default, metavar="DIR",
                        help=f"writes {writes}" + (f"; {extra}" if extra else ""))
    renamed_flag(parser, "--output", "--output-dir DIR", f"it writes {writes}")
