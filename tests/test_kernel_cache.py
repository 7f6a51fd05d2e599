"""numba's on-disk cache must serve every kernel to the next process.

numba keys a closure's cache entry by its pickled cells, and a cell holding a jitted function
pickles differently in every process: such a kernel silently recompiles on every start (1.5-2
s each for the sz kernels, and a new cache file per run). This walks every module of errbound
and mpi_collectives and checks that no cached kernel closes over anything but plain constants.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from numba.core.registry import CPUDispatcher

PACKAGES = ["errbound"]
try:
    import mpi_collectives  # noqa: F401  (needs mpi4py, an extra)

    PACKAGES.append("mpi_collectives")
except ImportError:
    pass


def _kernels():
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if info.name.endswith("__main__") or info.name.endswith(".gpu"):
                continue
            try:
                module = importlib.import_module(info.name)
            except ImportError:
                continue
            for name, value in vars(module).items():
                # kernels kept in tables (e.g. one per dimensionality) count too
                items = value.items() if isinstance(value, dict) else [(None, value)]
                items = [(key, getattr(item, "dispatcher", item)) for key, item in items]  # guarded parallel kernels
                for key, item in items:
                    if isinstance(item, CPUDispatcher) and item.__module__ == module.__name__:
                        yield f"{module.__name__}.{name}" + ("" if key is None else f"[{key!r}]"), item


KERNELS = dict(_kernels())


def test_kernels_were_found():
    assert len(KERNELS) > 40 and "errbound.stages.predictors.lorenzo.lorenzo_kernel" in KERNELS


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_cached_kernels_close_over_constants_only(name):
    kernel = KERNELS[name]
    closure = kernel.py_func.__closure__ or ()
    bad = [
        cell.cell_contents
        for cell in closure
        if not isinstance(cell.cell_contents, (bool, int, float, str, type(None)))
    ]
    assert not bad, f"{name} closes over {bad}: numba would recompile it in every process"


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_cached_kernels_compile_once_between_processes(name):
    """Every cached kernel goes through errbound.compiling's per-signature locks
    (``compiled_once_per_cache``): without them, processes sharing a cold cache compile the
    same signatures at once and can save them over each other."""
    from errbound.compiling import _SharedCache

    kernel = KERNELS[name]
    assert isinstance(kernel._cache, _SharedCache), f"{name} writes numba's cache without errbound's locks"
