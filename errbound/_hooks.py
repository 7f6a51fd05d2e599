"""Doors from the core to the integrations that open only when used.

``import errbound`` loads the core alone. Two things must still work without an import of
the integrations: the public sub-API names (``errbound.hdf5``, ``errbound.numcodecs``,
``errbound.zarr``), which are aliases of modules under ``errbound.integrations`` imported
on first use; and the HDF5 filter, which registers itself with h5py the moment h5py is
imported (or at once, if it already is). Both are import-system hooks, kept here (with the lazy
``errbound.tune``) so that nothing else in the core names an integration.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: public attribute of errbound -> (module, name) it stands for
ATTRIBUTES = {"tune": ("errbound.integrations.tune", "tune")}
#: public module name -> the module it stands for
ALIASES = {
    "errbound.hdf5": "errbound.integrations.hdf5",
    "errbound.numcodecs": "errbound.integrations.numcodecs",
    "errbound.zarr": "errbound.integrations.zarr",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import errbound.hdf5`` gives ``errbound.integrations.hdf5`` itself (one module, two names)."""

    def find_spec(self, name, path, target=None):
        if name not in ALIASES:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(ALIASES[spec.name])

    def exec_module(self, module):
        pass  # the target module ran when it was imported


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """One-shot hook: lets ``target`` import normally, then calls ``then()``."""

    def __init__(self, target: str, then):
        self.target, self.then, self._loader = target, then, None

    def find_spec(self, name, path, target=None):
        if name != self.target:
            return None
        self.remove()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._loader
        self._loader.exec_module(module)
        self.then()

    def install(self) -> None:
        if self.target in sys.modules:
            self.then()
        elif self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def _register_hdf5_filter() -> None:
    try:
        importlib.import_module("errbound.integrations.hdf5.inprocess").register()
    except Exception as exc:  # noqa: BLE001 - an odd h5py install must not break `import h5py`
        warnings.warn(f"errbound: could not register the HDF5 filter: {exc}", RuntimeWarning, stacklevel=2)


_alias = _Alias()
h5py_hook = _AfterImport("h5py", _register_hdf5_filter)


def attribute(name: str):
    """``errbound.<name>`` for the names of ATTRIBUTES and ALIASES (imported now)."""
    if name in ATTRIBUTES:
        module, attr = ATTRIBUTES[name]
        return getattr(importlib.import_module(module), attr)
    if f"errbound.{name}" in ALIASES:
        return importlib.import_module(f"errbound.{name}")
    raise AttributeError(f"module 'errbound' has no attribute {name!r}")


def install() -> None:
    """What ``import errbound`` does: the aliases, and the filter's registration with h5py."""
    if _alias not in sys.meta_path:
        sys.meta_path.append(_alias)
    h5py_hook.install()
