"""`sperr`: CDF 9/7 wavelets + SPECK bit-plane coding + outlier correction (SPERR's pipeline).

Stages, per chunk: conditioning (exact power-of-two scaling, mean removal, constant chunks
cost a header) -> CDF 9/7 lifting transform -> midtread quantization with step
``step_factor * bound`` and SPECK coding -> outlier correction, checked in the output dtype,
so the bound holds after the cast. Large arrays are cut into chunks (256^3 values in 3-D,
like SPERR) coded one after the other; inside a chunk the transform's lines and SPECK's
streams run in parallel threads, and the bytes do not depend on the thread count.

Sections: ``sperr`` (the chunk and stream table, with a CRC of the other sections),
``speck`` (the SPECK streams), ``outliers`` (correction positions and values) and ``exact``
(the values stored bit for bit).
"""

from __future__ import annotations

import itertools
import math
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ...bounds import finite_range
from ...bounds import psnr as measure_psnr
from ...codec import Codec, register
from ...errors import CorruptStreamError
from ...jit import parallel_map
from ...jit import threads as jit_threads
from ...layout import as_4d_shape
from ...stages.coders import speck
from ...stages.coders.zstd import ZstdLossless
from ...stages.corrections import sperr_outliers
from ...stages.decompositions import wavelet
from ...stages.transforms.sperr_conditioning import Conditioning, condition, restore
from ...stream import section
from . import policy

_MAGIC = b"SPR1"
# magic, version, header bound, correction step, chunk count, CRC of the other sections,
# largest chunk extent per axis
_HEAD = struct.Struct("<4sB3xddII4I")
_CHUNK = np.dtype(
    [
        ("kind", "u1"),
        ("split", "u1"),
        ("e", "<i2"),
        ("mean", "<f8"),
        ("q", "<f8"),
        ("nc", "<u4"),
        ("ne", "<u4"),
        ("bc", "u1"),
        ("be", "u1"),
        ("unit", "u1"),
        ("obytes", "<u4"),
    ]
)
_STREAM = np.dtype([("top", "i1"), ("nbytes", "<u4")])
_CODED, _CONSTANT = 0, 1


def _pmap(threads: int) -> wavelet.Pmap:
    """The map the transform and SPECK run their independent pieces with: errbound's threads
    (the kernels release the GIL), serial for one thread."""
    return wavelet.serial_map if threads <= 1 else parallel_map


def chunk_slices(shape4: tuple[int, ...], extent: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Chunk slices in C order; the chunks along an axis differ in length by at most one."""
    axes = []
    for n, side in zip(shape4, extent, strict=True):
        count = max(1, -(-n // side))
        cuts = [n * i // count for i in range(count + 1)]
        axes.append([slice(cuts[i], cuts[i + 1]) for i in range(count)])
    return list(itertools.product(*axes))


@register
class SperrCodec(Codec):
    name = "sperr"
    version = 1
    stage_names = ("sperr-conditioning", "cdf97", "speck", "sperr-outliers", "zstd")
    checks_bound = True

    def __init__(self, step_factor: float | None = None, chunk: int | None = None):
        """step_factor: quantization step / bound (default: chosen per chunk, see
        step_factor_for); chunk: chunk side (default: 256 in 3-D, see CHUNK_SIDE)."""
        if step_factor is not None and (
            isinstance(step_factor, bool) or not (isinstance(step_factor, (int, float)) and 0.25 <= step_factor <= 64)
        ):
            raise ValueError(f"sperr step_factor must be a number in [0.25, 64], got {step_factor!r}")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or not 8 <= chunk <= 1 << 24):
            raise ValueError(f"sperr chunk must be an int in [8, 2^24], got {chunk!r}")
        self.step_factor = None if step_factor is None else float(step_factor)
        self.chunk = chunk

    # ------------------------------------------------------------------ encoding

    def encode(self, data, eb):
        def prepared():  # one chunk at a time: memory for the coefficients of one chunk only
            for ch in _prepare(data, policy.PROBE_FACTOR * eb, 0, self.chunk):
                ch.factor = self.step_factor or policy.step_factor_for(ch.nonzero)
                yield ch

        return self._code(data, prepared(), eb, eb, eb, 0, keep=False)[:2]

    def encode_psnr(self, data: np.ndarray, target: float):
        """Hit a PSNR target directly, without a point-wise bound: the transform is nearly
        orthonormal, so the quantization error of the coefficients predicts the MSE; solve
        for the step on the coefficients, code, measure the real PSNR in the output dtype and
        correct. Returns (stages, sections, header bound) within [target, target + 0.5 dB],
        else the closest result above the target, or None when the target is out of reach.
        Steps are in units of 2^scale (the data's range), so data near the float maximum
        does not overflow the arithmetic."""
        value_range = finite_range(data)
        count = int(np.count_nonzero(np.isfinite(data)))
        if not (value_range > 0 and math.isfinite(value_range)) or count == 0:
            return None
        scale = math.frexp(value_range)[1]
        unit_range = math.ldexp(value_range, -scale)
        aim = policy.PSNR_MARGIN_DB / 2  # aim mid-window: the prediction is good to a few tenths of a dB
        target_mse = unit_range**2 * 10.0 ** (-(target + aim) / 10.0)
        q = math.sqrt(12.0 * target_mse)  # uniform quantization: MSE = q^2 / 12
        if not (target_mse * count > 0 and q >= unit_range * float(np.finfo(data.dtype).eps)):
            return None  # a step below the data's precision: only exact storage meets the target
        chunks = list(_prepare(data, q, scale, self.chunk))
        q = policy.solve_step(chunks, q, scale, target_mse * count)
        best = None
        for _ in range(policy.PSNR_TRIES):
            if not (q > 0 and math.isfinite(q)):
                break
            # the header needs a positive finite bound; the decoder reads the steps per chunk
            header_q = min(max(policy.ldexp(q, scale), 5e-324), sys.float_info.max)
            stages, sections, decoded = self._code(data, chunks, sys.float_info.max, header_q, q, scale, keep=True)
            got = measure_psnr(data, decoded)
            if got >= target and (best is None or got < best[0]):
                best = (got, stages, sections, header_q)
            if target <= got <= target + policy.PSNR_MARGIN_DB:
                break
            # float(): against a float32 eps numpy would cast a huge q to float32 (a warning)
            if q < unit_range * float(np.finfo(data.dtype).eps):
                break  # below the precision of the data: only exact storage gets there
            q *= 10.0 ** ((got - target - aim) / 20.0)  # PSNR moves 20 dB per decade of the step
        if best is None:
            return None
        return best[1], best[2], best[3]

    def _code(
        self,
        data: np.ndarray,
        chunks: Iterable[_Chunk],
        eb: float,
        header_eb: float,
        q_data: float,
        scale: int,
        keep: bool,
    ):
        """Quantize and SPECK-code prepared chunks with step q_data * 2^scale * (the chunk's
        factor), and check every point against eb in the output dtype. keep: leave the
        coefficients intact and return the reconstruction (for another try at another step);
        else they are overwritten, so each chunk is coded once."""
        shape4 = as_4d_shape(data.shape)
        transform = wavelet.CDF97()
        coder = speck.Speck()
        outliers = sperr_outliers.OutlierCorrection()
        lossless = ZstdLossless(level=1)
        threads = jit_threads()
        pmap = _pmap(threads)
        step = sperr_outliers.correction_step(eb, outliers.step_factor)
        single = data.dtype == np.float32
        table, streams, speck_parts, outlier_parts, exact_parts = [], [], [], [], []
        decoded = np.empty(shape4, data.dtype) if keep else None
        for ch in chunks:
            rec = np.zeros((), _CHUNK)
            if ch.kind == "constant":
                rec["kind"], rec["mean"] = _CONSTANT, ch.mean
                buf = np.full(ch.x.size, ch.mean)
            else:
                q = policy.chunk_step(q_data * ch.factor, scale - ch.e)
                rec["kind"], rec["split"], rec["e"], rec["mean"], rec["q"] = _CODED, ch.split, ch.e, ch.mean, q
                v = np.empty(ch.x.size, np.int64)
                speck.quantize(ch.coef, q, v)
                roots = speck.stream_roots(ch.dims, ch.levels, ch.groups)
                coded = pmap(
                    lambda root, ch=ch, v=v: speck.encode_stream(v, ch.dims, ch.levels, ch.groups, root), list(roots)
                )
                for top, part in coded:
                    streams.append((top, len(part)))
                    speck_parts.append(part)
                buf = np.empty_like(ch.coef) if keep else ch.coef
                speck.dequantize(v, q, buf)
                wavelet.inverse(buf.reshape(tuple(ch.dims)), ch.levels, ch.groups, pmap, threads)
                restore(buf, ch.mean, ch.e)
            ci, ck, ei = sperr_outliers.find(ch.x, buf, eb, step, single)
            if keep:
                sperr_outliers.apply_corrections(buf, ci, ck, step)
                with np.errstate(over="ignore"):
                    out = buf.astype(data.dtype)
                out[ei] = ch.x[ei]
                decoded[ch.sl] = out.reshape(decoded[ch.sl].shape)
            part, bc, be, unit = sperr_outliers.encode(ci, ck, ei)
            rec["nc"], rec["ne"], rec["bc"], rec["be"], rec["unit"], rec["obytes"] = (
                ci.size,
                ei.size,
                bc,
                be,
                unit,
                len(part),
            )
            outlier_parts.append(part)
            exact_parts.append(ch.x[ei].tobytes())
            table.append(rec)
        payload = {"speck": b"".join(speck_parts), "outliers": b"".join(outlier_parts), "exact": b"".join(exact_parts)}
        crc = 0
        for key in ("speck", "outliers", "exact"):
            payload[key] = lossless.compress(payload[key]) if payload[key] else b""
            crc = zlib.crc32(payload[key], crc)
        head = _HEAD.pack(_MAGIC, 1, header_eb, step, len(table), crc, *policy.chunk_extent(shape4, self.chunk))
        meta = head + np.array(table, _CHUNK).tobytes() + np.array(streams, _STREAM).tobytes()
        sections = [("sperr", meta)] + [(k, v) for k, v in payload.items() if v]
        stages = [s.record() for s in (Conditioning(), transform, coder, outliers, lossless)]
        return stages, sections, None if decoded is None else decoded.reshape(data.shape)

    # ------------------------------------------------------------------ decoding

    def decode(self, stages, sections, shape, dtype, eb):
        Conditioning.load(stages)
        transform = wavelet.CDF97.load(stages)
        speck.Speck.load(stages)
        sperr_outliers.OutlierCorrection.load(stages)
        lossless = ZstdLossless.load(stages)
        shape4 = as_4d_shape(shape)
        chunks, table, crc_expected, streams, step = _read_meta(sections, eb, shape4)
        count = math.prod(shape4)
        # what each section holds, by the tables (each entry checked against what its chunk
        # or set can need in _stream_plans; the decoder below refuses any other length), and
        # at most: per value a sign and a bit per plane, and as many set tests; an outlier
        # (two codes of at most 2 x 64 bits and a sign); an exact value. By the tables first:
        # a forged 34 KB stream otherwise inflated to 18x its declared output
        limits = {
            "speck": min(sum(nbytes for _, nbytes in streams), count * (4 * speck.MAX_PLANES + 8) // 8 + 1024),
            "outliers": min(int(table["obytes"].sum()), count * 33 + 1024),
            "exact": min(int(table["ne"].sum()) * dtype.itemsize, count * dtype.itemsize),
        }
        raw = {key: sections.get(key, b"") for key in limits}
        crc = 0
        for key in limits:  # the sections as stored: checked before anything is inflated
            crc = zlib.crc32(raw[key], crc)
        if crc != crc_expected:
            raise CorruptStreamError("sperr sections do not match their checksum")
        plans = _stream_plans(chunks, table, streams, transform)
        payload = {key: lossless.decompress(raw[key], limits[key]) if len(raw[key]) else b"" for key in limits}
        threads = jit_threads()
        pmap = _pmap(threads)
        out = np.empty(shape4, dtype)
        sp_off = ol_off = ex_off = 0
        speck_bytes, outlier_bytes, exact_bytes = (memoryview(payload[k]) for k in ("speck", "outliers", "exact"))
        for sl, rec, plan in zip(chunks, table, plans, strict=True):
            cshape = tuple(s.stop - s.start for s in sl)
            size = math.prod(cshape)
            buf = np.empty(size)
            if rec["kind"] == _CONSTANT:
                buf.fill(float(rec["mean"]))
            else:
                dims, levels, groups, roots, parts = plan
                jobs = []
                for root, (top, nbytes) in zip(roots, parts, strict=True):
                    jobs.append((root, int(top), speck_bytes[sp_off : sp_off + int(nbytes)]))
                    sp_off += int(nbytes)
                if sp_off > len(speck_bytes):
                    raise CorruptStreamError("sperr speck section is too short")
                v = np.zeros(size, np.int64)
                ok = pmap(
                    lambda job, v=v, dims=dims, levels=levels, groups=groups: speck.decode_stream(
                        job[2], job[1], v, dims, levels, groups, job[0]
                    ),
                    jobs,
                )
                if not all(ok):
                    raise CorruptStreamError("sperr speck stream cannot be decoded")
                speck.dequantize(v, float(rec["q"]), buf)
                wavelet.inverse(buf.reshape(cshape), levels, groups, pmap, threads)
                restore(buf, float(rec["mean"]), int(rec["e"]))
            nob = int(rec["obytes"])
            found = sperr_outliers.decode(
                outlier_bytes[ol_off : ol_off + nob],
                int(rec["nc"]),
                int(rec["ne"]),
                int(rec["bc"]),
                int(rec["be"]),
                int(rec["unit"]),
                size,
            )
            ol_off += nob
            if found is None or ol_off > len(outlier_bytes):
                raise CorruptStreamError("sperr outlier list cannot be decoded")
            ci, ck, ei = found
            sperr_outliers.apply_corrections(buf, ci, ck, step)
            with np.errstate(over="ignore"):  # beyond the float32 range: such points are exact values
                values = buf.astype(dtype)
            nex = ei.size * dtype.itemsize
            if ex_off + nex > len(exact_bytes):
                raise CorruptStreamError("sperr exact-value section is too short")
            values[ei] = np.frombuffer(exact_bytes[ex_off : ex_off + nex], dtype)
            ex_off += nex
            out[sl] = values.reshape(cshape)
        if (sp_off, ol_off, ex_off) != (len(speck_bytes), len(outlier_bytes), len(exact_bytes)):
            raise CorruptStreamError("sperr sections are longer than their tables")
        return out.reshape(shape)


def _stream_plans(chunks, table, streams, transform) -> list:
    """Per chunk, (dims, levels, axis groups, SPECK roots, their (top, nbytes) entries), or
    None for a constant chunk; every entry checked against what its chunk or set can need
    (as the encoder sizes its output: per value a sign and a bit per plane, and as many set
    tests; per outlier at most 33 bytes), so that no section is inflated beyond it."""
    plans, used = [], 0
    for sl, rec in zip(chunks, table, strict=True):
        cshape = tuple(s.stop - s.start for s in sl)
        size = math.prod(cshape)
        if int(rec["nc"]) + int(rec["ne"]) > size or int(rec["obytes"]) > 33 * (int(rec["nc"]) + int(rec["ne"])) + 16:
            raise CorruptStreamError("sperr chunk table claims more outliers than its chunk can hold")
        if rec["kind"] == _CONSTANT:
            plans.append(None)
            continue
        dims = np.array(cshape, np.int64)
        levels = transform.levels(dims)
        groups = wavelet.axis_groups(dims, int(rec["split"]))
        roots = speck.stream_roots(dims, levels, groups)
        parts = streams[used : used + len(roots)]
        used += len(roots)
        if len(parts) != len(roots):
            raise CorruptStreamError("sperr stream table is too short")
        for root, (top, nbytes) in zip(roots, parts, strict=True):
            if nbytes > speck.most_bytes(root, top):
                raise CorruptStreamError("sperr stream table claims more bytes than a set can code")
        plans.append((dims, levels, groups, roots, parts))
    if used != len(streams):
        raise CorruptStreamError("sperr sections are longer than their tables")
    return plans


@dataclass
class _Chunk:
    """One chunk ready for coding: its values and, unless constant, its wavelet coefficients."""

    sl: tuple[slice, ...]
    x: np.ndarray
    kind: str
    e: int = 0
    mean: float = 0.0
    coef: np.ndarray | None = None
    dims: np.ndarray | None = None
    levels: np.ndarray | None = None
    split: int = 0
    groups: np.ndarray | None = None
    nonzero: float = 0.0  # fraction of coefficients nonzero at the step the chunk was prepared for
    factor: float = 1.0  # the chunk's step / the step passed to _code


def _prepare(data: np.ndarray, q_data: float, scale: int, side: int | None) -> Iterator[_Chunk]:
    """Condition and transform the chunks one by one (the grouping of axes chosen for the
    step q_data * 2^scale)."""
    shape4 = as_4d_shape(data.shape)
    work = data.reshape(shape4)
    transform = wavelet.CDF97()
    threads = jit_threads()
    pmap = _pmap(threads)
    for sl in chunk_slices(shape4, policy.chunk_extent(shape4, side)):
        x = np.ascontiguousarray(work[sl]).reshape(-1)
        buf = np.empty(x.size)
        kind, e, mean = condition(x, buf)
        ch = _Chunk(sl, x, kind, e, mean)
        if kind != "constant":
            ch.dims = np.array(work[sl].shape, np.int64)
            ch.levels = transform.levels(ch.dims)
            q = policy.chunk_step(q_data, scale - e)
            ch.split, ch.coef, count = policy.best_transform(buf, ch.dims, ch.levels, q, pmap, threads)
            ch.nonzero = count / x.size
            ch.groups = wavelet.axis_groups(ch.dims, ch.split)
        yield ch


def _read_meta(sections: dict, eb: float, shape4: tuple[int, ...]):
    """(chunk slices, chunk table, crc, stream table, correction step), every number checked."""
    meta = bytes(section(sections, "sperr"))
    if len(meta) < _HEAD.size:
        raise CorruptStreamError("sperr table is truncated")
    magic, version, meta_eb, step, count, crc, *extent = _HEAD.unpack_from(meta, 0)
    if magic != _MAGIC or version != 1:
        raise CorruptStreamError("sperr table has a wrong magic number or version")
    if min(extent) < 1 or math.prod(-(-n // c) for n, c in zip(shape4, extent, strict=True)) != count:
        raise CorruptStreamError("sperr chunk grid does not match the shape")
    if meta_eb != eb or not (step > 0 and math.isfinite(step)):
        raise CorruptStreamError("sperr table does not match the stream header")
    end = _HEAD.size + count * _CHUNK.itemsize
    if len(meta) < end or (len(meta) - end) % _STREAM.itemsize:
        raise CorruptStreamError("sperr table has the wrong length")
    # only now, with a table entry present for each: a forged count of 16M one-value chunks
    # made 1.5 GB of slices here before the length above was checked
    chunks = chunk_slices(shape4, tuple(extent))
    table = np.frombuffer(meta, _CHUNK, count, _HEAD.size)
    streams = np.frombuffer(meta, _STREAM, offset=end)
    coded = table["kind"] == _CODED
    bad = (
        (table["kind"] > _CONSTANT)
        | (table["split"] > wavelet.SPLIT_ALL)
        | ~np.isfinite(table["mean"])
        | (coded & ~((table["q"] > 0) & (table["q"] < np.inf)))
        | (coded & (np.abs(table["e"].astype(np.int64)) > 1100))
        | (table["bc"] >= 62)
        | (table["be"] >= 62)
        | (table["unit"] > 1)
    )
    if bad.any() or (streams["top"] < -1).any() or (streams["top"] >= speck.MAX_PLANES).any():
        raise CorruptStreamError("sperr table holds impossible values")
    return chunks, table, crc, [(int(t), int(n)) for t, n in streams], step
