"""The engine of ``errbound h5 compress``: one process, or many under MPI, writing the same file.

Work is spread over (dataset, chunk) pairs of the whole file, not dataset by dataset, so a file
of many small single-chunk datasets keeps every rank busy too:

1. Every rank walks the input and makes the same plan: which datasets are compressed, their
   rule and chunk grid.
2. rel and psnr datasets need their finite range: every rank scans every size-th chunk of the
   whole plan; one allgather combines the minima and maxima (exact, so every rank gets the
   same absolute bound).
3. psnr datasets are settled before anything is written: every rank compresses and decodes its
   chunks, rank 0 adds up the squared errors in plan order, and a dataset below its target gets
   a bound tightened by the deficit and is measured again (the last try takes the per-chunk
   bound that guarantees the target). Rank 0 keeps the streams of the final try (up to
   KEEP_BYTES; beyond that they are compressed again when written), so no chunk is ever
   written twice and the file has no holes.
4. Rank 0 builds the output tree (groups, attributes, links, unchanged datasets, and the empty
   compressed datasets with their final filter parameters).
5. Every rank compresses every size-th chunk of the plan; after each batch rank 0 gathers the
   streams and writes them with direct chunk writes in plan order, which is why the file is
   byte-for-byte the one a single process writes (no parallel HDF5 needed).
6. Rank 0 re-attaches dimension scales; the file is renamed into place.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import h5py
import numpy as np

from ...bounds import psnr_to_abs
from ..progress import Progress
from . import chunks as chunk_codec
from . import inprocess
from .config import Config, Rule
from .files import (
    DatasetReport,
    H5ToolError,
    atomic_h5,
    check_paths,
    choose_chunks,
    chunk_grid,
    create_like,
    dataset_options,
    entries,
    finite_minmax,
    is_float_dataset,
    open_input,
    read_chunk,
    reattach_scales,
    rebuild_tree,
)

PSNR_RETRIES = 6
BATCH = 8  # chunks per rank between two gathers: bounds what rank 0 holds at once
KEEP_BYTES = 256 << 20  # streams of settled psnr datasets rank 0 keeps for writing


class _Serial:
    """The part of an mpi4py communicator used here, for one process."""

    rank, size = 0, 1

    def gather(self, obj, root=0):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def allgather(self, obj):
        return [obj]


@dataclass
class _Job:
    """One dataset to compress."""

    path: str
    src: h5py.Dataset
    rule: Rule
    chunks: tuple[int, ...]
    grid: list
    value_range: float = 0.0
    eb: float | None = None  # the absolute bound for every chunk (0: each chunk its own)
    dst: h5py.Dataset | None = None
    params: chunk_codec.FilterParams | None = None
    report: DatasetReport | None = None

    def options(self) -> dict:
        return chunk_codec.filter(self.rule.codec, **{self.rule.mode: self.rule.value}, abs_bound=self.eb)


def rule_for(ds: h5py.Dataset, path: str, config: Config) -> Rule | None:
    """The rule that compresses ``ds``, or None when it is copied unchanged."""
    if not isinstance(ds, h5py.Dataset) or not is_float_dataset(ds) or ds.nbytes < config.min_bytes:
        return None
    rule = config.rule_for(path)
    return rule if rule is not None and rule.mode is not None else None


def _plan(src: h5py.File, config: Config) -> list[_Job]:
    jobs, seen = [], set()
    for path, obj in entries(src):
        if isinstance(obj, h5py.Dataset) and obj.id not in seen:
            seen.add(obj.id)
            rule = rule_for(obj, path, config)
            if rule is not None:
                chunks = choose_chunks(obj, rule.chunks)
                jobs.append(_Job(path, obj, rule, chunks, chunk_grid(obj.shape, chunks)))
    return jobs


def _set_bounds(jobs: list[_Job], comm) -> None:
    """Absolute bounds; rel and psnr from the dataset's finite range (one allgather for all)."""
    ranged = [j for j in jobs if j.rule.mode in ("rel", "psnr")]
    items = [(k, offset) for k, job in enumerate(ranged) for offset in job.grid]
    local = {}
    for k, offset in items[comm.rank :: comm.size]:
        lo, hi = finite_minmax(ranged[k].src, ranged[k].chunks, [offset])
        old = local.get(k, (math.inf, -math.inf))
        local[k] = (min(old[0], lo), max(old[1], hi))
    merged = {}
    for part in comm.allgather(local):
        for k, (lo, hi) in part.items():
            old = merged.get(k, (math.inf, -math.inf))
            merged[k] = (min(old[0], lo), max(old[1], hi))
    for k, job in enumerate(ranged):
        lo, hi = merged.get(k, (math.inf, -math.inf))
        job.value_range = hi - lo if hi >= lo else 0.0
    for job in jobs:
        rule = job.rule
        if rule.mode == "abs":
            job.eb = rule.value
        elif rule.mode == "rel":
            job.eb = rule.value * job.value_range
        elif rule.mode == "psnr":
            job.eb = rule.start_abs or psnr_to_abs(rule.value, job.value_range)
        if job.eb is not None and not 0 < job.value_range < math.inf and rule.mode != "abs":
            # constant data, or a range beyond float64 (values near +-1e308, where rel * range
            # is infinite): each chunk is stored exactly, as compress() stores such an array
            job.eb = 0.0


def _prepare(job: _Job, parent) -> None:
    """Create the output dataset (rank 0) and fix the parameters every rank compresses with."""
    options = job.options()
    if parent is not None:
        job.dst = create_like(job.src, parent, job.path.rsplit("/", 1)[1], job.chunks, options)
    fill = dataset_options(job.src)
    pad = float(fill["fillvalue"]) if "fillvalue" in fill and fill.get("fill_time") != "never" else 0.0
    base = chunk_codec.parse_cd_values(options["compression_opts"])
    job.params = chunk_codec.FilterParams(
        base.codec, base.mode, base.value, base.abs_bound, job.src.dtype, job.chunks, pad
    )
    if job.dst is not None:  # what the filter itself would use on a plain write
        stored = chunk_codec.parse_cd_values(job.dst.id.get_create_plist().get_filter_by_id(chunk_codec.FILTER_ID)[1])
        same_pad = stored.pad == pad or (math.isnan(stored.pad) and math.isnan(pad))
        if (stored.codec, stored.mode, stored.value, stored.abs_bound, stored.dtype, stored.chunks) != (
            base.codec,
            base.mode,
            base.value,
            base.abs_bound,
            job.src.dtype,
            job.chunks,
        ) or not same_pad:
            raise H5ToolError(f"{job.path}: stored filter parameters {stored} differ from {job.params}")


def _encode(job: _Job, offset, want_sse: bool) -> tuple[bytes, tuple[float, int] | None]:
    block, real = read_chunk(job.src, offset, job.chunks)
    blob = chunk_codec.encode_chunk(block, job.params)
    if not want_sse:
        return blob, None
    back = chunk_codec.decode_chunk(blob, job.params.dtype, block.size).reshape(block.shape)[real]
    orig = block[real].astype(np.float64)
    finite = np.isfinite(orig)
    diff = (back.astype(np.float64) - orig)[finite]
    return blob, (float(np.dot(diff, diff)), int(np.count_nonzero(finite)))


def _run_chunks(jobs: list[_Job], ks: list[int], comm, bar, measure: bool) -> tuple[dict, dict]:
    """Compress every chunk of the jobs ``ks`` (rank r takes item i when i % size == r).

    Writing (``measure`` False): rank 0 writes the streams in plan order. Measuring: rank 0
    returns job -> [(squared error, count)] per chunk and job -> streams (empty when they pass
    KEEP_BYTES)."""
    items = [(k, offset) for k in ks for offset in jobs[k].grid]
    errors: dict[int, list] = {}
    kept: dict[int, list] = {}
    held = 0
    for start in range(0, len(items), comm.size * BATCH):
        mine = []
        for i in range(start + comm.rank, min(start + comm.size * BATCH, len(items)), comm.size):
            k, offset = items[i]
            mine.append((i, *_encode(jobs[k], offset, measure)))
        gathered = comm.gather(mine, root=0)
        if comm.rank != 0:
            continue
        for i, blob, err in sorted(itertools.chain.from_iterable(gathered), key=lambda item: item[0]):
            k, offset = items[i]
            if measure:
                errors.setdefault(k, []).append(err)
                held += len(blob)
                if held <= KEEP_BYTES:
                    kept.setdefault(k, []).append(blob)
            else:
                jobs[k].dst.id.write_direct_chunk(offset, blob, filter_mask=0)
            bar.update(note=jobs[k].path)
    return errors, (kept if held <= KEEP_BYTES else {})


def _psnr(errors: list, value_range: float) -> float:
    sse, count = math.fsum(e[0] for e in errors), sum(e[1] for e in errors)
    if sse == 0 or count == 0:
        return math.inf
    return 20 * math.log10(value_range) - 10 * math.log10(sse / count) if value_range > 0 else -math.inf


def _next_bound(history: list, eb: float, got: float, target: float) -> float:
    """The next bound to try: PSNR falls about 20 dB per decade of the bound, but on noisy data
    less, so from the second miss on the slope of the last two tries is used (5 to 40 dB)."""
    history.append((math.log10(eb), got))
    slope = 20.0
    if len(history) >= 2:
        (x0, y0), (x1, y1) = history[-2:]
        if x1 != x0:
            slope = min(max((y0 - y1) / (x1 - x0), 5.0), 40.0)
    return eb * 10.0 ** (-(target - got + 0.1) / slope)


def _settle_psnr(jobs: list[_Job], comm, bar) -> tuple[dict, dict]:
    """Find each psnr dataset's bound before writing. Returns (job -> kept streams on rank 0,
    job -> (PSNR, tries))."""
    todo = [k for k, job in enumerate(jobs) if job.rule.mode == "psnr" and job.eb]
    kept, outcome, history = {}, {}, {}
    for attempt in range(PSNR_RETRIES + 1):
        if not todo:
            break
        bar.total = (bar.total or 0) + sum(len(jobs[k].grid) for k in todo)
        errors, streams = _run_chunks(jobs, todo, comm, bar, measure=True)
        retry = {}
        if comm.rank == 0:
            for k in todo:
                job = jobs[k]
                got = _psnr(errors.get(k, []), job.value_range)
                outcome[k] = (got, attempt + 1)
                kept.pop(k, None)
                if got >= job.rule.value:
                    if k in streams:
                        kept[k] = streams[k]
                elif attempt + 1 >= PSNR_RETRIES:  # the per-chunk bound guarantees it (not measured)
                    retry[k], outcome[k] = 0.0, (None, attempt + 2)
                else:
                    retry[k] = _next_bound(history.setdefault(k, []), job.eb, got, job.rule.value)
        retry = comm.bcast(retry)
        for k, eb in retry.items():
            jobs[k].eb = eb
            _prepare(jobs[k], None)
        todo = sorted(k for k, eb in retry.items() if eb)
    return kept, outcome


def compress_file(src, dst, config: Config, *, comm=None, progress: bool | None = None) -> list[DatasetReport]:
    """See :func:`errbound.h5tools.compress_file`."""
    comm = comm or _Serial()
    check_paths(src, dst)
    inprocess.register()
    t0 = time.perf_counter()
    with open_input(src) as fin:
        jobs = _plan(fin, config)
        _set_bounds(jobs, comm)
        for job in jobs:
            _prepare(job, None)
        by_path = {job.path: job for job in jobs}
        with Progress(
            sum(len(job.grid) for job in jobs), "h5 compress", force=progress if comm.rank == 0 else False
        ) as bar:
            kept, outcome = _settle_psnr(jobs, comm, bar)
            kept_jobs = set(comm.bcast(sorted(kept)))
            with atomic_h5(dst, comm) as fout:

                def handle(ds, parent, path):
                    job = by_path.get(path)
                    if job is None or job.src.id != ds.id:
                        return None
                    _prepare(job, parent)
                    job.report = DatasetReport(
                        path, ds.shape, str(ds.dtype), "compressed", job.rule.describe(), original_bytes=ds.nbytes
                    )
                    return job.report

                reports = rebuild_tree(fin, fout, handle, scales=False)
                if fout is not None:
                    for k in sorted(kept_jobs):
                        for offset, blob in zip(jobs[k].grid, kept[k], strict=True):
                            jobs[k].dst.id.write_direct_chunk(offset, blob, filter_mask=0)
                    bar.update(sum(len(jobs[k].grid) for k in kept_jobs))
                _run_chunks(jobs, [k for k in range(len(jobs)) if k not in kept_jobs], comm, bar, measure=False)
                if fout is not None:
                    reattach_scales(fin, fout)
                    for k, job in enumerate(jobs):
                        job.report.abs_bound = job.eb or None
                        job.report.psnr, job.report.tries = outcome.get(k, (None, 1))
                        job.report.stored_bytes = max(job.dst.id.get_storage_size(), 1)
                        job.report.seconds = time.perf_counter() - t0
    return reports if comm.rank == 0 else []
