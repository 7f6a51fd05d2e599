"""errbound as an HDF5 filter (public as ``errbound.hdf5``).

    import h5py, errbound
    with h5py.File("out.h5", "w") as f:
        f.create_dataset("T", data=x, chunks=(16, 96, 192), **errbound.hdf5.filter(codec="sz", rel=1e-3))
    with h5py.File("out.h5") as f:
        part = f["T"][3:5]          # decodes only the chunks it touches

Registration: ``import errbound`` registers the filter in this process's h5py at once when h5py
is already imported, and otherwise the moment h5py is first imported (a one-shot import hook),
so a process that never touches HDF5 pays nothing. :func:`register` does it explicitly.

Every other HDF5 program (h5dump, h5repack, netCDF4-python, xarray, h5py without errbound)
loads the same filter from ``HDF5_PLUGIN_PATH=$(errbound h5 plugin-path)``: see ``plugin``.

Modules: ``chunks`` (the filter parameters and the chunk codec), ``inprocess`` (the registration
through h5py), ``plugin`` (the HDF5 plugin library and what it calls), ``h5lib`` (the HDF5 C
functions the callbacks use, for whichever libhdf5 calls), ``files`` and ``engine``
(``errbound h5``: whole files, with MPI), ``config`` (the bounds file).

Filter id 60160 (0xEB00, "EB" for errbound): The HDF Group assigns ids below 32768 (its
registered list runs from 305 to ~32033, hdf5plugin's filters among them) and leaves 32768-65535
to unregistered uses; 0xEB00 sits in that free range, far from the 32768 that test filters tend
to take. A process without the filter sees the id in the file and fails to read the data with
HDF5's usual missing-filter error, which names the filter by the name stored with it
(``FILTER_NAME``: what to install); shape, dtype and attributes stay readable.

Parameters (``cd_values``, 32-bit words), like H5Z-SZ3/H5Z-ZFP keep theirs::

    0      layout version (1)
    1, 2   codec name, ASCII, 8 bytes at most
    3      bound mode: 1 abs, 2 rel, 3 pw_rel, 4 psnr
    4, 5   bound value (float64, low word first)
    6, 7   absolute bound every chunk uses (float64; 0 = derive it per chunk)
    --- added by the filter when the dataset is created (set_local):
    8      value type: item size (4 or 8) | 256 if big-endian
    9      chunk rank n
    10..   n chunk sizes
    10+n   the value HDF5 pads edge chunks with (float64, 2 words): the fill value, or 0

Bounds per chunk: abs and pw_rel are pointwise, so every chunk simply uses them. rel and psnr
are whole-dataset properties; :mod:`errbound.integrations.hdf5.files` (and ``filter(..., data=x)``) convert
them into one absolute bound from the dataset's finite range before writing, so rel means
the dataset's range exactly. Without that, the filter (which HDF5 shows one chunk at a time,
with a chunk-shaped dataspace, never the dataset's) derives each chunk's absolute bound from
the finite range of its values other than the padding value: HDF5 fills the part of an edge
chunk outside the dataset (and unwritten elements) with the fill value -- 0 when none is set or
the fill time is "never" -- which may lie far outside the data. That range is never larger than
the dataset's, so the rel bound holds against the dataset's range. For psnr the chunk uses
``range * 10**(-psnr/20)``: its max error bounds every chunk's MSE by range**2 * 10**(-psnr/10),
so the whole dataset's PSNR meets the target (conservatively).

Like every lossy HDF5 filter, the bound holds for chunks written once: writing part of a chunk
that is already stored makes HDF5 decode it, merge and compress it again, and errors add up.
"""

from .chunks import (
    FILTER_ID,
    FILTER_NAME,
    LAYOUT_VERSION,
    FilterParams,
    chunk_abs_bound,
    decode_chunk,
    encode_chunk,
    filter,  # noqa: A004 - the public name, as in hdf5plugin
    parse_cd_values,
)
from .inprocess import is_registered, register

__all__ = [
    "FILTER_ID",
    "FILTER_NAME",
    "LAYOUT_VERSION",
    "FilterParams",
    "filter",
    "parse_cd_values",
    "chunk_abs_bound",
    "encode_chunk",
    "decode_chunk",
    "register",
    "is_registered",
]


def __getattr__(name: str):
    if name == "last_error":  # the last exception a filter callback reported to HDF5 (it changes)
        from . import inprocess

        return inprocess.last_error
    raise AttributeError(f"module 'errbound.hdf5' has no attribute {name!r}")
