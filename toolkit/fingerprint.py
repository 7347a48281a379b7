"""The fingerprint of the code a run executes: results made by other code are stale.

The files are the scripts a run starts and, transitively, every module of this repository they
import (found in the source, lazy imports inside functions included; top-level modules and the
modules of packages such as ``toolkit/``), so a new module is covered without a list to keep up to
date. Each file counts by its syntax tree, not its bytes: comments,
docstrings, argparse ``help=``/``description=`` texts and formatting do not change what a run
computes, so editing them leaves the results current. The tree is written out by
:func:`canonical` rather than ``ast.dump``, whose format differs between Python versions, so that
two machines agree on a fingerprint.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Optional

__all__ = ["imported_files", "code_files", "canonical", "imports", "file_digest", "text_digest", "combine", "fingerprint", "clear_cache"]

ROOT = Path(__file__).resolve().parents[1]
_TEXT_KEYWORDS = ("help", "description", "epilog")


def imports(tree: ast.AST) -> set:
    """Top-level names of every absolute import in ``tree``, those inside functions included."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _module_file(dotted: str, known) -> Optional[str]:
    """``a/b.py`` or ``a/b/__init__.py`` for the module ``a.b``, if ``known(name)`` says that file exists."""
    base = dotted.replace(".", "/")
    for name in (f"{base}.py", f"{base}/__init__.py"):
        if known(name):
            return name
    return None


def imported_files(tree: ast.AST, name: str, known) -> set:
    """The repository files that the file ``name`` (relative to the root) imports, lazy imports included.

    ``known(file)`` says whether a repository file exists. ``import a.b`` and ``from a.b import c`` run
    ``a/__init__.py`` and ``a/b.py`` (and ``a/b/c.py`` when ``c`` is a module); relative imports are
    resolved against the package of ``name``. Modules outside the repository resolve to nothing.
    """
    package = name.rsplit("/", 1)[0].replace("/", ".") if "/" in name else ""
    found = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            file = _module_file(".".join(parts[:i]), known)
            if file is not None:
                found.add(file)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".") if package else []
                up = up[:len(up) - (node.level - 1)] if node.level > 1 else up
                base = ".".join(up + ([node.module] if node.module else []))
            else:
                base = node.module
            if not base:
                continue
            add(base)
            for alias in node.names:
                if _module_file(f"{base}.{alias.name}", known) is not None:
                    add(f"{base}.{alias.name}")
    found.discard(name)
    return found


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def code_files(scripts, root: Path = ROOT) -> tuple:
    """``scripts`` and the repository modules they import, transitively: sorted names relative to ``root``."""
    def known(name: str) -> bool:
        return (root / name).is_file()
    seen, todo = set(), list(scripts)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += imported_files(_parse(root / name), name, known)
    return tuple(sorted(seen))


def _is_docstring(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def canonical(node) -> str:
    """The syntax tree as text: node types and fields, without docstrings, help texts, positions or empty fields."""
    if isinstance(node, list):
        return "[" + ",".join(canonical(x) for x in node) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    parts = [type(node).__name__]
    for field in node._fields:
        value = getattr(node, field, None)
        if field == "body" and isinstance(value, list) and value and _is_docstring(value[0]) and \
                isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            value = value[1:]
        if field == "keywords" and isinstance(node, ast.Call):
            value = [k for k in value if k.arg not in _TEXT_KEYWORDS]
        # Fields that are empty here may be absent in another Python version (e.g. type_params).
        if value is None or value == []:
            continue
        parts.append(f"{field}={canonical(value)}")
    return "(" + " ".join(parts) + ")"


@lru_cache(maxsize=None)
def file_digest(path: Path) -> str:
    """sha256 hex of one file's syntax tree (:func:`canonical`): what the file computes, not how it is worded.

    The band cache keys its folders by the engine's digest too, so a comment edit of ``pock.py``
    neither makes the ledger stale nor rebuilds a cache.
    """
    return hashlib.sha256(canonical(_parse(Path(path))).encode()).hexdigest()


def text_digest(source: str) -> str:
    """:func:`file_digest` of a file's text (e.g. as a git commit holds it)."""
    return hashlib.sha256(canonical(ast.parse(source)).encode()).hexdigest()


def combine(files: dict) -> str:
    """The fingerprint of ``{file: digest}``, the files in sorted order."""
    h = hashlib.sha256()
    for name, digest in sorted(files.items()):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def fingerprint(scripts, root: Path = ROOT) -> tuple:
    """``(sha256 hex, {file: sha256 hex})`` of the code ``scripts`` execute (see the module docstring)."""
    files = {name: file_digest(root / name) for name in code_files(tuple(scripts), root)}
    return combine(files), files


def clear_cache() -> None:
    """Forget parsed files (the tests edit files between calls)."""
    _parse.cache_clear()
    file_digest.cache_clear()
