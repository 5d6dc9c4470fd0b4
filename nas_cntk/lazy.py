"""A package's public names, each imported from its module on first use.

A package's ``__init__`` is its public face, but importing every module behind it would load torch,
MLflow and Optuna for ``nas-cntk --help``. So the face maps each name to the module that defines it,
and the module is imported when the name is first asked for (PEP 562's module ``__getattr__``)::

    public = LazyNames(__name__, {"run_search": "study", "Stores": "stores"})
    __getattr__, __all__ = public, public.names

May import: nothing.
"""
from __future__ import annotations

import importlib
from typing import Any


class LazyNames:
    """The ``__getattr__`` of ``package``: ``name`` comes from ``package.modules[name]``, imported then."""

    def __init__(self, package: str, modules: dict[str, str]) -> None:
        self.package = package
        self.modules = modules

    @property
    def names(self) -> list[str]:
        return sorted(self.modules)

    def __call__(self, name: str) -> Any:
        if name not in self.modules:
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{self.package}.{self.modules[name]}"), name)
