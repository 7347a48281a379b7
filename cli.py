"""One error type for mistakes a user can fix, and the wrapper that turns it into a one-line exit.

Scripts raise :class:`UserError` (or a subclass) with a message that names the problem and what
to do; :func:`run` prints ``error: <message>`` to stderr and exits with status 2, with no traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

__all__ = ["UserError", "run", "renamed_flag"]


class UserError(Exception):
    """A bad flag, missing or corrupt file, or incompatible checkpoint; the message says what to do."""


def run(main: Callable, parser, argv: Optional[Sequence[str]] = None):
    """Parse ``argv`` with ``parser``, call ``main(args)``; a :class:`UserError` exits 2 with one line."""
    args = parser.parse_args(argv)
    try:
        return main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def renamed_flag(parser, old: str, new: str, why: str = "") -> None:
    """Make ``old`` a flag that fails at parse time with a one-line message naming ``new``."""
    import argparse

    class _Renamed(argparse.Action):
        def __call__(self, p, namespace, values, option_string=None):
            p.error(f"{old} is gone: use {new}" + (f" ({why})" if why else ""))

    parser.add_argument(old, nargs="?", action=_Renamed, help=argparse.SUPPRESS)
