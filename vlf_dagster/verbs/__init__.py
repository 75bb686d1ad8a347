"""The toolbox verbs of the `vlf` command (filter, cut, set, bag, match, uniq, ...).

Each module here that defines ``register(subparsers)`` adds its verbs; the CLI discovers them.
"""

from __future__ import annotations

import importlib
import pkgutil


def register_all(subparsers) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
