"""Whole HDF5 files through errbound: the file side of ``errbound h5`` (compressing is the
``engine``'s, with these helpers).

    report = engine.compress_file("in.h5", "out.h5", load_config("bounds.toml"))
    decompress_file("out.h5", "plain.h5")
    rows = file_info("out.h5", check="in.h5")

Every float32/float64 dataset a rule assigns a bound to is rewritten through the errbound
filter (:mod:`errbound.hdf5`); groups, attributes, links, other datasets (integers, strings,
compounds, float datasets under ``min_bytes``) are copied unchanged with HDF5's own object copy,
and dimension scales are re-attached in the new file. Data moves one chunk at a time (bounded
memory). The output is written to a temporary file beside it and renamed over at the end; the
input is opened read-only.

Chunks are compressed here and stored with direct chunk writes, the same bytes the filter would
produce. That makes MPI simple: with ``comm`` (an mpi4py communicator) every rank reads the
input and compresses every size-th chunk, and rank 0 gathers them and writes them in the serial
order, so the file is the same as a single process writes (no parallel HDF5 needed).

rel and psnr bounds refer to the dataset: its finite range is measured first (one read pass)
and turned into one absolute bound for all chunks. For psnr, the squared errors of all chunks are
added up (in chunk order, so MPI gives the same sum); if the dataset misses the target, the bound
is tightened by the deficit and the chunks are written again.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ...errors import CorruptStreamError, ErrboundError
from ..atomic import atomic_output
from ..progress import Progress
from . import chunks as chunk_codec
from . import inprocess

TARGET_CHUNK_BYTES = 4 << 20
MIN_CHUNK_BYTES = 256 << 10  # smaller source chunks are merged: errbound needs room to predict
_DS_ATTRS = ("DIMENSION_LIST", "REFERENCE_LIST")  # object references: rebuilt, never copied
_FILL_TIMES = {h5py.h5d.FILL_TIME_ALLOC: "alloc", h5py.h5d.FILL_TIME_NEVER: "never", h5py.h5d.FILL_TIME_IFSET: "ifset"}


class H5ToolError(ErrboundError, ValueError):
    """A file cannot be processed (missing, not HDF5, same as the output, ...)."""


@dataclass
class DatasetReport:
    """What happened to one dataset."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    action: str  # "compressed", "copied", "decompressed"
    rule: str = ""
    abs_bound: float | None = None
    original_bytes: int = 0
    stored_bytes: int = 0
    seconds: float = 0.0
    psnr: float | None = None
    tries: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.stored_bytes if self.stored_bytes else math.inf


# ---------------------------------------------------------------------------------------------
# files


def open_input(path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise H5ToolError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise H5ToolError(f"{path}: not a readable HDF5 file ({exc})") from None


@contextlib.contextmanager
def atomic_h5(path, comm=None) -> Iterator[h5py.File | None]:
    """An HDF5 file written under a temporary name beside ``path`` and renamed over it at the
    end (:func:`errbound.integrations.atomic.atomic_output`: on any error the temporary file
    goes and ``path`` is untouched; an existing file keeps its permissions). With a
    communicator only rank 0 writes; the others get None.
    """
    if comm is not None and comm.rank != 0:
        yield None
        return
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def check_paths(src, dst) -> None:
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise H5ToolError(f"{src}: no such file")
    if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst)):
        raise H5ToolError(f"refusing to overwrite the input file {src}")
    if not dst.parent.is_dir():
        raise H5ToolError(f"{dst.parent}: no such directory for the output")


# ---------------------------------------------------------------------------------------------
# walking and copying


def entries(group: h5py.Group, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(path, link or object) for everything below ``group``, parents before children, in
    HDF5's link order: every rank walks the same list."""
    for name in group:
        path = f"{prefix}/{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            yield path, link
            continue
        obj = group[name]
        yield path, obj
        if isinstance(obj, h5py.Group):
            yield from entries(obj, path)


def copy_attrs(src, dst, skip=()) -> None:
    """Copy attributes with their exact type and shape (object references are skipped)."""
    for name in src.attrs:
        if name in skip:
            continue
        dtype = src.attrs.get_id(name).dtype
        if h5py.check_dtype(ref=dtype) or (
            dtype.names and any(h5py.check_dtype(ref=dtype.fields[n][0]) for n in dtype.names)
        ):
            continue  # a reference into the input file means nothing in the output
        dst.attrs.create(name, src.attrs[name], dtype=dtype)


def is_float_dataset(ds: h5py.Dataset) -> bool:
    return (
        ds.dtype.kind == "f"
        and ds.dtype.itemsize in (4, 8)
        and ds.shape is not None
        and len(ds.shape) > 0
        and not ds.is_virtual
        and ds.external is None
    )


def rebuild_tree(src: h5py.File, dst: h5py.File | None, handle, scales: bool = True) -> list[DatasetReport]:
    """Walk ``src``; each dataset goes to ``handle(ds, dst_parent_or_None, path)``, which returns a
    report or None to have it copied unchanged. Groups, links, attributes and copies are made in
    ``dst`` (None on MPI ranks other than 0: they only take part in ``handle``)."""
    reports, seen = [], {}
    if dst is not None:
        copy_attrs(src, dst)
    for path, obj in entries(src):
        parent = None if dst is None else dst[path.rsplit("/", 1)[0] or "/"]
        if isinstance(obj, (h5py.SoftLink, h5py.ExternalLink)):
            if dst is not None:
                dst[path] = obj
            continue
        if obj.id in seen:  # a second hard link to an object already written
            if dst is not None:
                dst[path] = dst[seen[obj.id]]
            continue
        seen[obj.id] = path
        if isinstance(obj, h5py.Group):
            if dst is not None:
                copy_attrs(obj, dst.create_group(path))
            continue
        report = handle(obj, parent, path)
        if report is None:
            if dst is not None:
                src.copy(obj, parent, name=path.rsplit("/", 1)[1])
                for name in _DS_ATTRS:
                    if name in dst[path].attrs:
                        del dst[path].attrs[name]
            report = DatasetReport(
                path,
                obj.shape or (),
                str(obj.dtype),
                "copied",
                original_bytes=obj.nbytes,
                stored_bytes=max(obj.id.get_storage_size(), 1),
            )
        reports.append(report)
    if dst is not None and scales:
        reattach_scales(src, dst)
    return reports


def reattach_scales(src: h5py.File, dst: h5py.File) -> None:
    """Dimension scales hold object references into their file, so they are rebuilt, not copied."""
    datasets, seen = [], set()
    for path, obj in entries(src):
        if isinstance(obj, h5py.Dataset) and obj.id not in seen:
            seen.add(obj.id)
            datasets.append((path, obj))
    for path, ds in datasets:
        if h5py.h5ds.is_scale(ds.id) and not h5py.h5ds.is_scale(dst[path].id):
            name = h5py.h5ds.get_scale_name(ds.id)
            dst[path].make_scale(name.decode() if name else "")
    for path, ds in datasets:
        if "DIMENSION_LIST" in ds.attrs:
            for axis, dim in enumerate(ds.dims):
                for scale in dim.values():
                    dst[path].dims[axis].attach_scale(dst[scale.name])


def dataset_options(src: h5py.Dataset) -> dict:
    """Keyword arguments that keep a dataset's fill value, fill time and maximum shape."""
    dcpl = src.id.get_create_plist()
    options = {"maxshape": src.maxshape, "track_times": False}
    if dcpl.fill_value_defined() == h5py.h5d.FILL_VALUE_USER_DEFINED:
        options["fillvalue"] = src.fillvalue
    fill_time = dcpl.get_fill_time()
    if fill_time in _FILL_TIMES:
        options["fill_time"] = _FILL_TIMES[fill_time]
    return options


def create_like(src: h5py.Dataset, parent: h5py.Group, name: str, chunks, options: dict) -> h5py.Dataset:
    """A dataset shaped like ``src`` (fill value, fill time, max shape, attributes) with new
    chunks and filter ``options``."""
    dst = parent.create_dataset(
        name, shape=src.shape, dtype=src.dtype, chunks=chunks, **dataset_options(src), **options
    )
    copy_attrs(src, dst, skip=_DS_ATTRS + ("CLASS", "NAME"))  # a scale's own attributes come back with make_scale
    return dst


def choose_chunks(src: h5py.Dataset, wanted: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The rule's chunk shape, else the source's when it is big enough, else about 4 MiB made by
    halving leading axes (trailing axes stay whole: contiguous planes predict best)."""
    shape, item = src.shape, src.dtype.itemsize
    if wanted is not None:
        if len(wanted) != len(shape):
            raise H5ToolError(f"{src.name}: chunks {list(wanted)} do not match its {len(shape)} dimensions")
        chunks = tuple(
            min(c, max(n, 1)) if src.maxshape[i] == n else c for i, (c, n) in enumerate(zip(wanted, shape, strict=True))
        )
        # HDF5's own limit, checked before a chunk that size is padded in memory (a growable
        # axis keeps the chunk length asked for, however long)
        if math.prod(chunks) * item >= 1 << 32:
            raise H5ToolError(
                f"{src.name}: chunks {list(chunks)} would hold {math.prod(chunks) * item} bytes; "
                "HDF5 chunks must be smaller than 4 GiB"
            )
        return chunks
    if src.chunks and math.prod(src.chunks) * item >= MIN_CHUNK_BYTES:
        return src.chunks
    chunks = [max(n, 1) for n in shape]
    axis = 0
    while math.prod(chunks) * item > TARGET_CHUNK_BYTES and axis < len(chunks):
        if chunks[axis] == 1:
            axis += 1
            continue
        chunks[axis] = (chunks[axis] + 1) // 2
    return tuple(chunks)


def chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Offsets of every chunk that holds data, in C order."""
    return list(itertools.product(*(range(0, n, c) for n, c in zip(shape, chunks, strict=True))))


def chunk_region(offset, chunks, shape) -> tuple[slice, ...]:
    """The part of the dataset the chunk at ``offset`` covers."""
    return tuple(slice(o, min(o + c, n)) for o, c, n in zip(offset, chunks, shape, strict=True))


def read_chunk(src: h5py.Dataset, offset, chunks) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The chunk at ``offset`` padded to full size (edges repeated, which predicts well; the
    fill value on extendible axes, where HDF5 would show the padding after growing)."""
    region = chunk_region(offset, chunks, src.shape)
    block = src[region]
    pads = [(0, c - (s.stop - s.start)) for c, s in zip(chunks, region, strict=True)]
    if any(p for _, p in pads):
        if src.maxshape != src.shape:
            block = np.pad(block, pads, mode="constant", constant_values=src.fillvalue)
        else:
            block = np.pad(block, pads, mode="edge")
    return block, tuple(slice(0, s.stop - s.start) for s in region)


def finite_minmax(src: h5py.Dataset, chunks, offsets) -> tuple[float, float]:
    """Smallest and largest finite value of the dataset in the chunks at ``offsets`` (inf,
    -inf if none): the values only, not a padded chunk's fill, which is no value of the
    dataset (a fill of 0 beside values near 100 made a rel bound 100x too loose)."""
    lo, hi = math.inf, -math.inf
    for offset in offsets:
        block = src[chunk_region(offset, chunks, src.shape)]
        finite = block[np.isfinite(block)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return lo, hi


# ---------------------------------------------------------------------------------------------
# decompress and inspect


def errbound_params(ds: h5py.Dataset) -> chunk_codec.FilterParams | None:
    """The errbound filter parameters of a dataset, or None when it does not use the filter."""
    if not isinstance(ds, h5py.Dataset) or ds.chunks is None:
        return None
    dcpl = ds.id.get_create_plist()
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, _name = dcpl.get_filter(i)
        if code == chunk_codec.FILTER_ID:
            params = chunk_codec.parse_cd_values(values)
            # HDF5 trusts the size a filter returns: parameters edited to a smaller chunk (or
            # another dtype) than the dataset's would have it read past the decoded values.
            # The filter never sees the dataset; here, where the dataset is known, it is checked
            if params.chunks is not None and (tuple(params.chunks) != tuple(ds.chunks) or params.dtype != ds.dtype):
                raise CorruptStreamError(
                    f"{ds.name}: errbound filter parameters describe {list(params.chunks)} {params.dtype} "
                    f"chunks, the dataset has {list(ds.chunks)} {ds.dtype}"
                )
            return params
    return None


def decompress_file(src, dst, *, progress: bool | None = None) -> list[DatasetReport]:
    """Copy ``src`` to ``dst`` with every errbound-compressed dataset stored plain (same chunks,
    no filter); everything else is copied unchanged."""
    check_paths(src, dst)
    inprocess.register()
    with open_input(src) as fin:
        targets = [obj for _, obj in entries(fin) if errbound_params(obj) is not None]
        total = sum(len(chunk_grid(ds.shape, ds.chunks)) for ds in targets)
        with Progress(total, "h5 decompress", force=progress) as bar, atomic_h5(dst) as fout:

            def handle(ds, parent, path):
                params = errbound_params(ds)
                if params is None:
                    return None
                t0 = time.perf_counter()
                out = create_like(ds, parent, path.rsplit("/", 1)[1], ds.chunks, {})
                for offset in chunk_grid(ds.shape, ds.chunks):
                    region = chunk_region(offset, ds.chunks, ds.shape)
                    out[region] = ds[region]
                    bar.update(note=path)
                return DatasetReport(
                    path,
                    ds.shape,
                    str(ds.dtype),
                    "decompressed",
                    f"{params.codec} {params.describe()}",
                    original_bytes=ds.nbytes,
                    stored_bytes=max(out.id.get_storage_size(), 1),
                    seconds=time.perf_counter() - t0,
                )

            return rebuild_tree(fin, fout, handle)


def file_info(path, check=None) -> list[dict]:
    """Per dataset: path, shape, dtype, codec, bound, stored bytes and ratio; with ``check`` (the
    original file) also max error, the absolute bound it is held to, their ratio and PSNR."""
    inprocess.register()
    rows = []
    with open_input(path) as f, open_input(check) if check else contextlib.nullcontext() as orig:
        for name, ds in entries(f):
            if not isinstance(ds, h5py.Dataset):
                continue
            params = errbound_params(ds)
            stored = ds.id.get_storage_size()
            row = {
                "path": name,
                "shape": ds.shape,
                "dtype": str(ds.dtype),
                "codec": params.codec if params else "-",
                "bound": params.describe() if params else "-",
                "original_bytes": ds.nbytes,
                "stored_bytes": stored,
                "ratio": ds.nbytes / stored if stored else math.inf,
            }
            if orig is not None and params is not None:
                if name not in orig or orig[name].shape != ds.shape:
                    row["check"] = "not in the original (or another shape)"
                else:
                    row.update(_check_dataset(orig[name], ds, params))
            rows.append(row)
    return rows


def _check_dataset(orig: h5py.Dataset, ds: h5py.Dataset, params: chunk_codec.FilterParams) -> dict:
    """Max error, the absolute bound in force, and PSNR, one chunk at a time."""
    lo, hi, sse, count, max_err, max_rel, exact = math.inf, -math.inf, 0.0, 0, 0.0, 0.0, True
    for offset in chunk_grid(ds.shape, ds.chunks):
        region = chunk_region(offset, ds.chunks, ds.shape)
        a, b = orig[region].astype(np.float64), ds[region].astype(np.float64)
        finite = np.isfinite(a)
        exact &= bool(
            np.array_equal(np.isnan(a), np.isnan(b))
            and np.array_equal(a[~finite & ~np.isnan(a)], b[~finite & ~np.isnan(a)])
        )
        d = np.abs(a - b)[finite]
        if d.size:
            lo, hi = min(lo, float(a[finite].min())), max(hi, float(a[finite].max()))
            max_err = max(max_err, float(d.max()))
            sse += float(np.dot(d, d))
            count += d.size
            nz = a[finite] != 0
            if nz.any():
                max_rel = max(max_rel, float((d[nz] / np.abs(a[finite][nz])).max()))
    value_range = hi - lo if hi >= lo else 0.0
    bound = {
        "abs": params.value,
        "rel": params.value * value_range,
        "pw_rel": None,
        "psnr": params.abs_bound or value_range * 10 ** (-params.value / 20),
    }[params.mode]
    if params.mode == "abs" and params.abs_bound:
        bound = params.abs_bound
    psnr = (
        math.inf
        if sse == 0
        else (20 * math.log10(value_range) - 10 * math.log10(sse / count) if value_range > 0 else -math.inf)
    )
    out = {"max_err": max_err, "abs_bound": bound, "psnr": psnr, "range": value_range, "nonfinite_exact": exact}
    out["err_over_bound"] = (
        (max_rel / params.value)
        if params.mode == "pw_rel"
        else (max_err / bound if bound else (0.0 if max_err == 0 else math.inf))
    )
    return out
