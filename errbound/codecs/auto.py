"""The `auto` codec: per array, the codec (and its policy) with the highest ratio at the bound.

The candidates (``sz``, ``sperr``, ``fz``, and ``hlr`` for large 2-D matrices) each code the
same few blocks of the array, spread evenly over it (about 1/16 of the values; a small array
is coded whole). Every candidate within 10 % of the best on the sample then codes the whole
array (samples of a few blocks misjudge by up to ~8 %), and the smallest stream is kept. ``sz`` chooses its predictor once, on the
whole array, and codes the blocks with it, so its sample costs one pass over them.

The stream's first stage record (``auto``) names the chosen codec and its version and keeps
the sampled ratios (``errbound info`` shows them); the rest of the stream is the chosen
codec's own stages, and its sections under the codec's name (``sz.codes``), decoded by that
codec. Decoding needs no guess and no sampling. The header names the codec ``auto``, so a
version of errbound without it refuses the stream by name (``unknown codec 'auto'``).

Not the default of :func:`errbound.compress`, the filters or the collectives: when ``sperr`` wins
(the climate fields at loose bounds) ``auto`` costs ``sperr``'s time, 3-5x that of ``sz`` (see
``benchmarks/compare.py``). Files written once and read for years take it by default:
``errbound h5 compress`` (and ``h5 ud``) and ``errbound tune``'s candidates. There a large 2-D
chunk (both sides >= HLR_MIN_SIDE) whose corner probe is low-rank may be coded with ``hlr``,
which the tuner leaves out of its own candidates for its time.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from .. import stream
from ..codec import Codec, get_codec, register
from ..errors import CodecOptionError, CorruptStreamError, UnsupportedStreamError
from ..layout import as_4d_shape
from ..stage import Stage

#: tried in this order; on a tie the earlier (faster) one wins
CANDIDATES = ("fz", "sz", "hlr", "sperr")
#: a slower codec must beat the best faster one by this factor on the sample
SLOWER_MARGIN = {"fz": 1.0, "sz": 1.0, "hlr": 1.03, "sperr": 1.01}
SAMPLE_SHARE = 1 / 16  # of the values, coded by every candidate
WHOLE_BELOW = 1 << 14  # arrays with fewer values (or sampled at half) are coded whole by every candidate
# sample block edge by number of axes longer than 1: large enough for sz's coarse levels and
# for sperr's wavelet levels
# (4-D: 12^4 blocks gave sperr's wavelet too few levels: on a smooth 16^4 field its sample
# ratio was 15, its ratio on the array 86, and auto took sz at a quarter of that)
BLOCK_EDGE = {1: 1 << 14, 2: 128, 3: 32, 4: 16}
HLR_MIN_SIDE = 512  # hlr only for matrices: both sides at least this long ...
HLR_BLOCK = 512  # ... sampled on blocks of this side (low-rank tiles need room)
HLR_PROBE = 128  # the corner block whose singular values say whether hlr is worth a try (~3 ms)
# ratio first: zstd at a higher level and sz's rANS coder (sz's own default: Huffman + zstd 3, for speed)
SZ_ENTROPY = "best"
CLOSE = 1.10  # sampled ratios this close: the two best both code the whole array (samples misjudge by <= 8 %)
# where the best candidate codes the sample into fewer bytes than this, fixed costs (tables,
# anchors, a wavelet's coarse levels) weigh on the blocks as they do not on the array: every
# candidate within WIDE of the best codes the whole array (a smooth 400 x 500 field at rel
# 1e-2: sperr 1.2x sz on one 128^2 block, 0.73x on the array)
SMALL_SAMPLE_BYTES = 4096
WIDE = 1.5


@dataclass
class AutoChoice(Stage):
    """Stage: which codec coded the array (and its version), and why: the ratio each
    candidate reached on the sample of ``sample_values`` values (the whole array when
    that equals its size), and where the best two were close there, their ratios on the
    whole array (``full``)."""

    name = "auto"

    codec: str
    codec_version: int
    sampled: dict
    sample_values: int
    full: dict  # the ratios on the whole array of the two codecs that were close on the sample

    def __post_init__(self):
        if not isinstance(self.codec, str) or not isinstance(self.sampled, dict) or not isinstance(self.full, dict):
            raise TypeError("auto: codec must be a name, sampled and full tables")
        for table in (self.sampled, self.full):  # shown by `errbound info`: ratios by codec name
            for name, ratio in table.items():
                if (
                    isinstance(ratio, bool)
                    or not isinstance(ratio, (int, float))
                    or not math.isfinite(ratio)
                    or ratio < 0
                ):
                    raise ValueError(f"auto: ratio {ratio!r} of {name!r} is not a finite number >= 0")
        self.codec_version = int(self.codec_version)
        self.sample_values = int(self.sample_values)
        if self.sample_values < 0:
            raise ValueError(f"auto: sample of {self.sample_values} values")


def sample_blocks(data: np.ndarray, edge: dict[int, int] = BLOCK_EDGE, share: float = SAMPLE_SHARE):
    """Blocks of ``data`` (same number of axes) spread evenly over it, about ``share`` of the values."""
    shape4 = as_4d_shape(data.shape)
    live = [a for a in range(4) if shape4[a] > 1]
    if not live:
        return [data]
    extent = block_extent(shape4, live, edge[len(live)])
    per_block = math.prod(extent)
    count = max(1, round(share * data.size / per_block))
    per_axis = max(1, math.ceil(count ** (1 / len(live))))
    starts = []
    for a in range(4):
        room = shape4[a] - extent[a]
        k = min(per_axis, room + 1) if a in live and room > 0 else 1
        starts.append(sorted({round(room * (i + 0.5) / k) for i in range(k)}) if k > 1 else [room // 2])
    corners = list(itertools.product(*starts))
    if len(corners) > count:
        corners = [corners[i] for i in sorted(set(np.linspace(0, len(corners) - 1, count).round().astype(int)))]
    view = data.reshape(shape4)
    out = []
    for corner in corners:
        block = view[tuple(slice(c, c + e) for c, e in zip(corner, extent, strict=True))]
        out.append(np.ascontiguousarray(block).reshape([extent[a] for a in range(4 - data.ndim, 4)]))
    return out


def block_extent(shape4, live: list[int], edge: int) -> list[int]:
    """A sample block's size along each axis: about edge**len(live) values, as even as the
    shape allows. An axis shorter than its share is taken whole and the others grow to keep
    the volume: a (50000, 3) series of 3 variables in blocks of 128 x 3 gave sperr's wavelet
    1.3 % of the values and 8 % of its ratio on the whole array (it lost to sz by 2.3x)."""
    extent = [1, 1, 1, 1]
    volume = float(edge) ** len(live)
    by_length = sorted(live, key=lambda a: shape4[a])
    for i, a in enumerate(by_length):
        side = min(shape4[a], max(1, round(volume ** (1 / (len(by_length) - i)))))
        extent[a] = side
        volume /= side
    return extent


def _coded_bytes(codec: str, data: np.ndarray, eb: float, stages, sections, header: bool = True) -> int:
    """The sections plus (``header``) the header a stream of them would carry (it matters
    on small arrays), coded as the container codes its header; ``sections``: (name, bytes
    or length)."""
    lengths = [[name, body if isinstance(body, int) else len(body)] for name, body in sections]
    if not header:
        return sum(length for _, length in lengths)
    head = {
        "codec": codec,
        "codec_version": 1,
        "dtype": data.dtype.str,
        "shape": list(data.shape),
        "order": "C",
        "bound": None,
        "abs_bound": eb,
        "stages": stages,
        "sections": lengths,
    }
    header = stream.encode_header(json.dumps(head, separators=(",", ":")).encode())
    return sum(length for _, length in lengths) + len(header) + stream.OVERHEAD


class _Trial:
    """One candidate on the sample: its coded bytes, and its result when the sample was the array."""

    def __init__(self, codec: str, data: np.ndarray, eb: float, blocks, whole: bool, sz_choice):
        self.codec = codec
        self.result = None
        if codec == "sz" and whole:
            # an array that is auto's own sample: sz's stream of it (sz's policy may still
            # have sampled it, so its close call is settled as for a finalist)
            stages, sections = _sz_stream(data, eb, sz_choice)
            coded = _coded_bytes(codec, data, eb, stages, sections)
            self.result = (stages, sections)
        elif codec == "sz":
            from .sz import entropy_code, lossless_for

            # the predictor chosen for the array, with the anchor grid of each block's size;
            # the blocks' codes entropy-coded together, as the array's are (one table)
            sz_predictor = sz_choice.predictor
            codes, unpredictable = [], []
            for block in blocks:
                predictor = dataclasses.replace(sz_predictor)
                if hasattr(predictor, "anchor"):
                    predictor.anchor = None
                c, u, _ = predictor.encode(block, eb)
                codes.append(c)
                unpredictable.append(u.tobytes())
            lossless = lossless_for(SZ_ENTROPY)
            entropy, section = entropy_code(np.concatenate(codes), sz_predictor.radius, lossless, SZ_ENTROPY == "best")
            stages = [sz_predictor.record(), entropy.record(), lossless.record()]
            # the exact values as the stream codes them (uncompressed, they made sz look 15 %
            # larger than fz on float64 noise at a bound below its precision, and lose)
            exact = lossless.compress(b"".join(unpredictable))
            coded = _coded_bytes(codec, data, eb, stages, [("codes", section), ("unpredictable", exact)])
        else:
            # the blocks as one stream: one header, as sz's sample and the array have (a
            # header per block made the other candidates' samples up to 30 % larger than
            # their codes on very compressible data)
            instance = get_codec(codec)()
            coded = 0
            for i, block in enumerate(blocks):
                stages, sections = instance.encode(block, eb)
                coded += _coded_bytes(codec, block, eb, stages, sections, header=i == 0)
                if whole:
                    self.result = (stages, sections)
        self.values = sum(b.size for b in blocks)
        self.coded = coded
        self.ratio = self.values * data.itemsize / max(coded, 1)
        self.full_bytes = None

    def full(self, data: np.ndarray, eb: float, sz_choice) -> None:
        """Code the whole array (kept as the result)."""
        if self.codec == "sz":
            stages, sections = _sz_stream(data, eb, sz_choice)
        else:
            stages, sections = get_codec(self.codec)().encode(data, eb)
        self.result = (stages, sections)
        self.full_bytes = _coded_bytes(self.codec, data, eb, stages, sections)


def _sz_stream(data: np.ndarray, eb: float, sz_choice):
    """The `sz` codec's own stream of the whole array: its close call settled now (only a
    finalist, or an array auto codes whole, pays for that), with what the policy coded."""
    from .sz import encode_stages

    choice = sz_choice.settled(data, eb)
    stages, sections, _ = encode_stages(
        data, eb, choice.predictor, entropy=SZ_ENTROPY, encoded=choice.encoded, keep_recon=False
    )
    return stages, sections


def _looks_low_rank(data: np.ndarray, eb: float) -> bool:
    """hlr pays only on matrices with low-rank off-diagonal blocks (kernel and covariance
    matrices): the singular values of the top-right corner block say whether this is one."""
    side = HLR_PROBE
    corner = np.asarray(data[:side, -side:], np.float64)
    if not np.isfinite(corner).all():
        return False
    singular = np.linalg.svd(corner, compute_uv=False)
    return int(np.count_nonzero(singular > eb)) <= side // 2


def candidates_for(data: np.ndarray, eb: float, names=CANDIDATES) -> list[str]:
    out = []
    for name in names:
        if name == "hlr" and not (data.ndim == 2 and min(data.shape) >= HLR_MIN_SIDE and _looks_low_rank(data, eb)):
            continue
        out.append(name)
    return out


def _sample(data: np.ndarray, with_hlr: bool) -> list[np.ndarray]:
    if data.size < WHOLE_BELOW:
        return [data]
    # with hlr, every candidate codes hlr's blocks: the trials must see the same values
    blocks = sample_blocks(data, {2: HLR_BLOCK}) if with_hlr else sample_blocks(data)
    return [data] if 2 * sum(b.size for b in blocks) >= data.size else blocks


def choose(data: np.ndarray, eb: float, names=CANDIDATES):
    """(the chosen trial, every trial, sz's policy choice): every candidate codes the same
    sample; every candidate within CLOSE of the best there codes the whole array, and the
    smallest stream wins (samples of a few blocks misjudge by up to ~8 %)."""
    asked = names
    names = candidates_for(data, eb, names)
    if not names:  # only hlr was asked for, and this array is no matrix it codes
        raise CodecOptionError(
            f"auto: none of the candidates {list(asked)} applies to a {data.ndim}-D array of shape "
            f"{data.shape} (hlr: 2-D matrices with both sides >= {HLR_MIN_SIDE} and low-rank blocks)"
        )
    blocks = _sample(data, "hlr" in names)
    whole = len(blocks) == 1 and blocks[0] is data
    sz_choice = None
    trials = []
    for name in names:
        if name == "sz":
            from .sz.policy import choose as choose_sz

            sz_choice = choose_sz(data, eb)
        trials.append(_Trial(name, data, eb, blocks, whole, sz_choice))
    ranked = sorted(trials, key=lambda t: -t.ratio / SLOWER_MARGIN.get(t.codec, 1.0))
    best = ranked[0]
    close = WIDE if best.coded < SMALL_SAMPLE_BYTES else CLOSE
    if whole or len(ranked) < 2 or ranked[1].ratio * close < best.ratio:
        return best, trials, sz_choice
    finals = [t for t in ranked if t.ratio * close >= best.ratio]
    for trial in finals:
        trial.full(data, eb, sz_choice)
    best = min(finals, key=lambda t: (t.full_bytes * SLOWER_MARGIN.get(t.codec, 1.0), CANDIDATES.index(t.codec)))
    return best, trials, sz_choice


@register
class AutoCodec(Codec):
    """Chooses per array (per chunk in HDF5 and zarr) the candidate codec with the highest
    ratio on a sample (see the module docstring). Option ``candidates``: the codecs to choose
    from (names, default all of :data:`CANDIDATES`)."""

    name = "auto"
    version = 1
    stage_names = ("auto", "<the chosen codec's stages>")

    def __init__(self, candidates=None):
        if candidates is None:
            self.candidates = CANDIDATES
            return
        if isinstance(candidates, str):
            candidates = [c.strip() for c in candidates.split(",") if c.strip()]
        unknown = [c for c in candidates if c not in CANDIDATES]
        if unknown or not candidates:
            raise ValueError(f"auto candidates must be some of {list(CANDIDATES)}, got {candidates!r}")
        self.candidates = tuple(c for c in CANDIDATES if c in candidates)

    def encode(self, data, eb):
        best, trials, sz_choice = choose(data, eb, self.candidates)
        codec = get_codec(best.codec)
        self.checks_bound = codec.checks_bound  # the shared verification pass follows the chosen codec
        if best.result is None:
            best.full(data, eb, sz_choice)
        stages, sections = best.result
        choice = AutoChoice(
            best.codec,
            codec.stream_version(stages),
            {t.codec: float(f"{t.ratio:.4g}") for t in trials},
            best.values,
            {t.codec: float(f"{data.nbytes / t.full_bytes:.4g}") for t in trials if t.full_bytes},
        )
        # the chosen codec's sections under its name: relabelled as that codec, the stream is
        # refused (it lacks the codec's sections) rather than decoded past the auto record
        return [choice.record()] + stages, [(f"{best.codec}.{name}", body) for name, body in sections]

    # a PSNR target: sperr's own search (encode_psnr), and auto's pick at the bound the PSNR
    # implies; the API keeps the smaller (through a bound alone, auto's stream of a smooth
    # field at 60 dB was 1.6x sperr's)
    psnr_by_bound_too = True

    def encode_psnr(self, data: np.ndarray, target: float):
        """sperr's stream aimed at the PSNR ``target``, as auto's (see ``psnr_by_bound_too``),
        where sperr is a candidate and reaches it: (stages, sections, header bound) or None."""
        if "sperr" not in self.candidates:
            return None
        sperr = get_codec("sperr")
        found = sperr().encode_psnr(data, target)
        if found is None:
            return None
        stages, sections, header_bound = found
        ratio = float(f"{data.nbytes / max(1, sum(len(body) for _, body in sections)):.4g}")
        choice = AutoChoice("sperr", sperr.stream_version(stages), {"sperr": ratio}, data.size, {"sperr": ratio})
        self.checks_bound = sperr.checks_bound
        return [choice.record()] + stages, [(f"sperr.{name}", body) for name, body in sections], header_bound

    def decode(self, stages, sections, shape, dtype, eb):
        choice = AutoChoice.load(stages)
        if choice.codec not in CANDIDATES:
            raise CorruptStreamError(f"auto stage names codec {choice.codec!r}, which auto never chooses")
        codec = get_codec(choice.codec)
        if choice.codec_version > codec.version:
            raise UnsupportedStreamError(
                f"stream needs codec {choice.codec} v{choice.codec_version}; this errbound has v{codec.version}"
            )
        inner = [r for r in stages if not (isinstance(r, dict) and r.get("name") == AutoChoice.name)]
        prefix = f"{choice.codec}."
        own = {name[len(prefix) :]: body for name, body in sections.items() if name.startswith(prefix)}
        return codec.__new__(codec).decode(inner, own, shape, dtype, eb)
