"""The toolbox verbs of the `vlf` command (filter, cut, set, bag, match, uniq, ...).

Each module here that defines ``register(subparsers)`` adds its verbs; the CLI discovers them.
"""

from __future__ import annotations

import importlib
import pkgutil


# The module that registers each verb, so that a command imports only its own verb's module (each
# pulls in pyarrow, duckdb and more: importing all of them cost every command 0.1-0.2 s).
# tests/test_verb_inputs.py checks this map against what the modules register.
VERB_MODULES = {
    "bag": "bags", "bagbuild": "bags", "bagcat": "bags", "bagtool": "bags", "collect": "collect", "count": "count",
    "cut": "cut", "filter": "filter", "import": "importing", "match": "match", "cat": "records", "sort": "records",
    "tuc": "records", "set": "sets", "setbuild": "sets", "setcat": "sets", "settool": "sets", "sql": "sql",
    "scan": "scan", "stats": "stats", "uniq": "uniq",
}


def register_all(subparsers, only: str | None = None) -> None:
    """Register the verbs: only ``only``'s module when it names a verb, else every module here."""
    if only in VERB_MODULES:
        names = [VERB_MODULES[only]]
    else:
        names = sorted(info.name for info in pkgutil.iter_modules(__path__))
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
