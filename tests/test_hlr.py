"""The `hlr` codec: quadtree tiles, merges, the block table, the point-wise pass, determinism,
shapes from 1-D to 4-D, and damaged low-rank streams. (Every registered codec, hlr included,
also runs through the shared property, adversarial, real-field and corruption suites.)"""

from __future__ import annotations

import json
import warnings

import numba
import numpy as np
import pytest
from conftest import PROPERTY_EXAMPLES, check_roundtrip, field_names, load_field, roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

import errbound
from errbound import stream
from errbound.codecs.hlr import HLRCodec
from errbound.errors import CodecOptionError, CorruptStreamError, OutputLimitError, UnsupportedStreamError
from errbound.stages.decompositions import lowrank as lr


def kernel_matrix(n: int = 512, dtype=np.float32) -> np.ndarray:
    """exp(-|x_i - x_j|) over sorted points: every off-diagonal block has rank 1."""
    x = np.sort(np.random.default_rng(7).uniform(0, 20, n))
    return np.exp(-np.abs(x[:, None] - x[None, :])).astype(dtype)


def smooth_low_rank(shape, rank=3, noise=1e-4, dtype=np.float64, seed=3) -> np.ndarray:
    """Sum of ``rank`` products of smooth vectors (rows: the first axis) plus a little noise."""
    rng = np.random.default_rng(seed)
    rows, cols = shape[0], int(np.prod(shape[1:]))
    t, s = np.linspace(0, 1, rows), np.linspace(0, 1, cols)
    a = sum(
        np.outer(np.sin((k + 1) * 3 * t + rng.uniform(0, 6)), np.cos((k + 1) * 5 * s + rng.uniform(0, 6))) * 10.0**-k
        for k in range(rank)
    )
    return (100 + a + noise * rng.standard_normal((rows, cols))).reshape(shape).astype(dtype)


def magnitude_bits(eb: float):
    """A stand-in for the `sz` cost of a tile: bits grow with its magnitude over the bound."""
    return lambda tile: float(np.log2(1.0 + np.abs(tile).max() / eb)) * tile.size


def low_rank_blocks(blob: bytes) -> int:
    return next(s for s in errbound.info(blob)["stages"] if s["name"] == "lowrank")["params"]["blocks"]


# ------------------------------------------------------------------------------ tiles and merges


def test_halves_split_at_multiples_of_the_leaf():
    assert lr.halves(64, 64) == [(0, 64)]
    assert lr.halves(999, 64) == [(0, 512), (512, 487)]
    assert lr.halves(100, 64) == [(0, 64), (64, 36)]
    assert len(lr.children_of(0, 0, 100, 8192, 64)) == 4
    assert len(lr.children_of(0, 0, 50, 8192, 64)) == 2


def test_factor_round_trip_reconstructs_the_blocks():
    a = kernel_matrix(256, np.float64)
    eb = 1e-5
    root = lr.Planner(a, eb, magnitude_bits(eb), lr.Policy(leaf=32)).plan()
    table, values, blocks, x = lr.serialize(root, 32)
    assert blocks.shape[0] > 0
    parsed, px = lr.parse_table(table, a.shape, 32)
    np.testing.assert_array_equal(parsed, blocks)
    np.testing.assert_array_equal(px, x)
    blob = lr.zfp_encode(values, 2 * eb)
    low = lr.reconstruct(a.shape, parsed, lr.scale_factors(lr.zfp_decode(blob, lr.factor_count(parsed)), parsed, px))
    covered = low != 0
    assert covered.mean() > 0.5
    # the factors' own error stays near the budget: the residual pass only patches up
    assert np.abs(low - a)[covered].max() < 20 * eb


def test_vectorized_scaling_and_products_match_a_loop_per_block():
    """scale_factors and reconstruct work on all blocks at once; per block, by the layout
    (F's columns, then G's, each padded to 4) and a plain product, they give the same bits."""
    rng = np.random.default_rng(7)
    blocks, off, r0 = [], 0, 0
    for nr, nc in [(1, 1), (3, 17), (16, 4), (5, 5), (33, 2), (8, 40)]:
        rank = int(rng.integers(1, min(nr, nc) + 1))
        blocks.append((r0, 3, nr, nc, rank, off))
        off, r0 = off + rank * (lr.padded(nr) + lr.padded(nc)), r0 + nr
    blocks = np.array(blocks, np.int64)
    x = rng.integers(-40, 40, int(blocks[:, 4].sum()))
    factors = rng.standard_normal(off)
    scaled = lr.scale_factors(factors, blocks, x)
    low = lr.reconstruct((r0, 48), blocks, scaled)
    expected, k = np.zeros((r0, 48)), 0
    for b0, c0, nr, nc, rank, start in blocks:
        pr, pc = lr.padded(int(nr)), lr.padded(int(nc))
        f = factors[start : start + rank * pr].reshape(rank, pr)[:, :nr]
        g = factors[start + rank * pr : start + rank * (pr + pc)].reshape(rank, pc)
        g = g * np.ldexp(1.0, x[k : k + rank])[:, None]
        np.testing.assert_array_equal(scaled[start : start + rank * pr], factors[start : start + rank * pr])
        np.testing.assert_array_equal(scaled[start + rank * pr : start + rank * (pr + pc)], g.ravel())
        for i in range(nr):  # k in increasing order, no FMA: the kernel's order
            for kk in range(rank):
                expected[b0 + i, c0 : c0 + nc] += f[kk, i] * g[kk, :nc]
        k += rank
    np.testing.assert_array_equal(low, expected)


def test_four_rank_one_siblings_merge_into_one_block():
    u, v = np.linspace(1, 2, 256), np.cos(np.linspace(0, 3, 256))
    a = np.outer(u, v)
    root = lr.Planner(a, 1e-6, magnitude_bits(1e-6), lr.Policy(leaf=32)).plan()
    assert root.kind == lr.LOWRANK and root.x.size == 1, "the whole rank-1 matrix is one merged block"


def test_recompression_matches_the_svd_of_the_data():
    a = smooth_low_rank((128, 128), rank=5, noise=0.0)
    planner = lr.Planner(a, 1e-6, magnitude_bits(1e-6), lr.Policy(leaf=64))
    kids = []
    for r0, c0, nr, nc in lr.children_of(0, 0, 128, 128, 64):
        kid = lr.Node(r0, c0, nr, nc)
        u, s, vt = np.linalg.svd(a[r0 : r0 + nr, c0 : c0 + nc])
        planner._keep_fine(kid, u, s, vt.T, 0.0)
        kids.append(kid)
    parent = lr.Node(0, 0, 128, 128, children=kids)
    planner._recompress(parent)
    s = np.linalg.svd(a, compute_uv=False)
    rank = parent.s.size
    assert rank == np.count_nonzero(s > 1e-6), "the constant offset and 5 products: rank 6"
    np.testing.assert_allclose(parent.s, s[:rank], rtol=1e-9)
    np.testing.assert_allclose((parent.U * parent.s) @ parent.V.T, a, atol=1e-8)


def test_parse_table_refuses_inconsistent_tables():
    a = kernel_matrix(256, np.float64)
    root = lr.Planner(a, 1e-5, magnitude_bits(1e-5), lr.Policy(leaf=32)).plan()
    table, *_ = lr.serialize(root, 32)
    for bad in (table[:-1], table + b"\x00", table[: lr._TABLE_HEAD.size], b""):
        with pytest.raises(CorruptStreamError):
            lr.parse_table(bad, a.shape, 32)
    with pytest.raises(CorruptStreamError):
        lr.parse_table(table, (a.shape[0] * 4, a.shape[1]), 32)  # the tree no longer fits
    with pytest.raises(CorruptStreamError):
        lr.parse_table(table, a.shape, 512)  # a split where the quadtree has a leaf
    # an 8 x 8 matrix of 4 x 4 leaves whose first leaf claims rank 4 or 5 (the counts agree):
    # the encoder keeps at most 3/4 of the smaller side (Policy.max_rank_share), and a forged
    # full rank cost the decoder rank * nr * nc (8 s for one 2048^2 block from a 267 KB stream)
    codes = bytes([lr.SPLIT, lr.LOWRANK, lr.ZERO, lr.ZERO, lr.ZERO])
    for rank, fine in ((3, True), (4, False), (5, False), (0, False)):
        forged = (
            lr._TABLE_HEAD.pack(8, 8, 4, len(codes), rank)
            + codes
            + np.uint32(rank).tobytes()
            + np.zeros(rank, np.int16).tobytes()
        )
        if fine:
            assert lr.parse_table(forged, (8, 8), 4)[0].tolist() == [[0, 0, 4, 4, rank, 0]]
        else:
            with pytest.raises(CorruptStreamError, match=f"4 x 4 claims rank {rank}"):
                lr.parse_table(forged, (8, 8), 4)


def test_parse_table_refuses_a_matrix_no_machine_holds():
    """A forged geometry of 2^31 x 2^31 (a few bytes of table) is refused before the walk: its
    factor offsets would leave int64 and no machine holds the array."""
    n = 1 << 31
    table = lr._TABLE_HEAD.pack(n, n, 128, 1, 0) + bytes([lr.ZERO])
    with pytest.raises(OutputLimitError, match="2147483648 x 2147483648"):
        lr.parse_table(table, (n, n), 128)


# ------------------------------------------------------------------------------ the codec


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_low_rank_matrix_uses_blocks_and_keeps_the_bound(dtype):
    a = kernel_matrix(512, dtype)
    for eb in (1e-2, 1e-4, 1e-6):
        blob, out = roundtrip(a, "hlr", "abs", eb)
        assert low_rank_blocks(blob) > 0
        assert len(blob) < len(errbound.compress(a, "sz", abs=eb))


def test_residual_is_coded_in_the_arrays_own_dtype():
    """v2: a float32 array's residual is float32 (lowrank v2, hlr v2); a float64 array's
    stream is what v1 wrote (a v1 record without the parameter), so older readers read it."""
    for dtype, version in ((np.float32, 2), (np.float64, 1)):
        a = kernel_matrix(256, dtype)
        blob, out = roundtrip(a, "hlr", "abs", 1e-4)
        meta = errbound.info(blob)
        record = next(s for s in meta["stages"] if s["name"] == "lowrank")
        assert record["params"]["blocks"] > 0
        assert record["version"] == version and meta["codec_version"] == version
        if dtype == np.float32:
            assert record["params"]["residual"] == "float32"
        else:
            assert "residual" not in record["params"]
    # a v1 record means a float64 residual (the 0.2.0 fixture hlr-lowrank-f32 decodes so)
    assert lr.LowRankTiles.from_params({"split": 1, "leaf": 8, "tolerance": 0.0, "blocks": 1}).residual == "float64"


@pytest.mark.parametrize("residual", ["float16", "", 3, None])
def test_forged_residual_dtypes_raise(lowrank_blob, residual):
    def forge(obj, secs):
        next(s for s in obj["stages"] if s["name"] == "lowrank")["params"]["residual"] = residual

    with pytest.raises(CorruptStreamError, match="lowrank"):
        errbound.decompress(_forge(lowrank_blob, forge))


def test_residual_parameter_belongs_to_version_2_records(lowrank_blob):
    def v1_with_residual(obj, secs):
        next(s for s in obj["stages"] if s["name"] == "lowrank")["version"] = 1

    def v2_without_residual(obj, secs):
        del next(s for s in obj["stages"] if s["name"] == "lowrank")["params"]["residual"]

    for forge in (v1_with_residual, v2_without_residual):
        with pytest.raises(CorruptStreamError, match="residual dtype only in version 2"):
            errbound.decompress(_forge(lowrank_blob, forge))


def test_float32_residuals_beyond_float32_range_are_corrected_silently():
    """Near float32's maximum, x - L can overflow float32: the point is stored as an
    unpredictable value and restored exactly by the corrections pass, without warnings."""
    a = kernel_matrix(512, np.float32) * np.float32(3e38)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blob, _ = roundtrip(a, "hlr", "rel", 1e-2)
    assert low_rank_blocks(blob) > 0


def test_global_low_rank_plan_on_a_matricized_stack():
    # noise at 0.3x the bound: the residual's codes are near white, the field's are not (at
    # 1x the bound `sz` alone, its codes in parts, became as small as the low-rank plan).
    # The columns are scrambled: in order, `sz` with the second axis frozen codes the stack
    # as small as the low-rank plan does (14.4 KB each), which then rightly is not used
    a = smooth_low_rank((60, 40, 50), rank=3, noise=3e-5).reshape(60, 2000)
    a = np.ascontiguousarray(a[:, np.random.default_rng(5).permutation(2000)].reshape(60, 40, 50))
    blob, _ = roundtrip(a, "hlr", "abs", 1e-4)
    assert low_rank_blocks(blob) >= 1
    assert len(blob) < len(errbound.compress(a, "sz", abs=1e-4))


SHARED_2D_3D = [n for n in field_names() if n.count("x") in (1, 2)]


@pytest.mark.parametrize(
    "name",
    SHARED_2D_3D or [pytest.param("<no shared data>", marks=pytest.mark.skip(reason="shared data folder not present"))],
)
def test_bound_on_shared_fields(name):
    x = load_field(name)
    span = float(x.max()) - float(x.min())
    for data in (x, x.astype(np.float64)):
        blob = errbound.compress(data, "hlr", abs=1e-3 * span)
        check_roundtrip(data, errbound.decompress(blob), "abs", 1e-3 * span)


def test_specials_in_low_rank_tiles_round_trip_exactly():
    a = kernel_matrix(256, np.float64)
    a[3, 200] = np.nan
    a[100, 7] = -0.0
    a[200, 100] = -np.inf
    a[150, 20] = 0.0
    for mode, value in (("abs", 1e-5), ("rel", 1e-4), ("pw_rel", 1e-3), ("psnr", 80.0)):
        roundtrip(a, "hlr", mode, value)
        roundtrip(np.asfortranarray(a), "hlr", mode, value)


def test_corrections_patch_the_points_the_factors_miss():
    a = kernel_matrix(256, np.float64)
    a[10, 200] += 0.5  # a spike inside a rank-1 block
    blob, out = roundtrip(a, "hlr", "abs", 1e-6)
    assert out[10, 200] == a[10, 200] or abs(out[10, 200] - a[10, 200]) <= 1e-6


@pytest.mark.parametrize(
    "shape",
    [
        (1, 40000),
        (40000, 1),
        (64, 1, 300),
        (1, 128, 1, 160),
        (2, 3, 4, 5),
        (300,),
        (20000,),
        (33, 2000),
        (16, 16, 16, 16),
        (40, 30, 20, 10),
    ],
)
def test_shapes_from_1d_to_4d(shape):
    rng = np.random.default_rng(1)
    a = smooth_low_rank((shape[0], int(np.prod(shape[1:]))), rank=2, noise=1e-3).reshape(shape)
    a = a + 1e-2 * rng.standard_normal(shape)
    for dtype in (np.float32, np.float64):
        roundtrip(a.astype(dtype), "hlr", "abs", 1e-3)


def test_streams_are_deterministic_across_runs_and_threads():
    a = kernel_matrix(256, np.float32)
    threads = numba.get_num_threads()
    try:
        blobs = []
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            blobs.append(errbound.compress(a, "hlr", abs=1e-4))
            blobs.append(errbound.compress(a, "hlr", abs=1e-4))
        assert all(b == blobs[0] for b in blobs)
        outs = []
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            outs.append(errbound.decompress(blobs[0]))
        assert all(np.array_equal(o.view(np.uint32), outs[0].view(np.uint32)) for o in outs)
    finally:
        numba.set_num_threads(threads)


def test_codec_options_are_checked():
    a = kernel_matrix(256, np.float32)
    roundtrip(a, "hlr", "abs", 1e-4, leaf=32, tolerance=4.0)
    for bad in (
        {"leaf": 6},
        {"leaf": 33},
        {"leaf": "64"},
        {"tolerance": 0},
        {"tolerance": float("nan")},
        {"nonsense": 1},
    ):
        with pytest.raises((CodecOptionError, TypeError)):
            errbound.compress(a, "hlr", abs=1e-3, **bad)


# ------------------------------------------------------------------------------ damaged low-rank streams


def _forge(blob: bytes, mutate) -> bytes:
    """Apply ``mutate(header_obj, sections)`` and re-seal the container's checksum."""
    header, sections = stream.unpack(blob)
    obj = json.loads(header.to_json())
    secs = [[name, bytes(data)] for name, data in sections.items()]
    mutate(obj, secs)
    header = stream.Header.from_json(json.dumps(obj).encode())
    return stream.pack(header, [(n, b) for n, b in secs])


@pytest.fixture(scope="module")
def lowrank_blob():
    a = kernel_matrix(256, np.float32)
    a[5, 200] = -0.0  # inside a low-rank block: only an exact correction restores the sign
    blob = errbound.compress(a, "hlr", abs=1e-4)
    assert low_rank_blocks(blob) > 0 and "corrections" in errbound.info(blob)["sections"]
    return blob


def _section_edit(name, edit):
    def fn(obj, secs):
        for s in secs:
            if s[0] == name:
                s[1] = edit(s[1])

    return fn


def _param(key, value):
    def fn(obj, secs):
        next(s for s in obj["stages"] if s["name"] == "lowrank")["params"][key] = value

    return fn


@pytest.mark.parametrize(
    "forgery",
    [
        _section_edit("lowrank-factors", lambda b: b[:-3]),
        _section_edit("lowrank-factors", lambda b: b[:20] + bytes([b[20] ^ 0x10]) + b[21:]),
        _section_edit("lowrank-factors", lambda b: bytes(len(b))),
        _section_edit("lowrank-table", lambda b: b[:-1]),
        _section_edit("lowrank-table", lambda b: b[:6] + bytes([b[6] ^ 1]) + b[7:]),
        _section_edit("corrections", lambda b: b[:-1]),
        _param("blocks", 0),
        _param("blocks", 999),
        _param("split", 2),
        _param("split", 0),
        _param("split", "1"),
        _param("leaf", 16),
        _param("leaf", 2),
        _param("leaf", None),
        _param("blocks", -1),
        lambda obj, secs: obj["stages"].pop(0),
        lambda obj, secs: secs.pop(0),
    ],
    ids=lambda f: getattr(f, "__name__", "forgery"),
)
def test_damaged_low_rank_streams_raise(lowrank_blob, forgery):
    forged = _forge(lowrank_blob, forgery)
    if forged == lowrank_blob:
        pytest.skip("the sample stream has no such section")
    with pytest.raises(CorruptStreamError):
        errbound.decompress(forged)


def test_newer_stage_versions_are_refused(lowrank_blob):
    for name in ("lowrank", "hlr-corrections"):

        def bump(obj, secs, name=name):
            next(s for s in obj["stages"] if s["name"] == name)["version"] += 1

        with pytest.raises(UnsupportedStreamError, match=name):
            errbound.decompress(_forge(lowrank_blob, bump))


def test_dense_stream_is_not_an_sz_stream():
    blob = errbound.compress(np.linspace(0, 1, 1000), "hlr", abs=1e-3)
    assert low_rank_blocks(blob) == 0
    with pytest.raises(CorruptStreamError):
        errbound.decompress(_forge(blob, lambda obj, secs: obj.update(codec="sz")))


def test_codec_is_registered():
    assert errbound.codecs()["hlr"] is HLRCodec
    assert "lowrank" in repr(HLRCodec())


# ------------------------------------------------------------------------------ cluster order


def scrambled_kernel(n: int = 512, seed: int = 5) -> np.ndarray:
    """exp(-|p_i - p_j|) over points of a 2-D mesh numbered in no particular order (as mesh
    generators number unstructured meshes): low-rank blocks exist only after reordering."""
    side = int(np.sqrt(n))
    g = (np.arange(side) + 0.5) / side
    p = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = p[np.random.default_rng(seed).permutation(p.shape[0])]
    return np.exp(-np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))).astype(np.float32)


@pytest.fixture(scope="module")
def clustered_blob():
    a = scrambled_kernel(576)
    blob = errbound.compress(a, "hlr", abs=1e-3)
    return a, blob


def test_cluster_order_groups_nearby_points():
    from errbound.stages.transforms.cluster_order import cluster_permutation

    side, leaf = 32, 64
    g = np.arange(side, dtype=np.float64)
    p = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = p[np.random.default_rng(1).permutation(p.shape[0])]
    k = np.exp(-np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)) / side)
    order = cluster_permutation(k, leaf)
    assert sorted(order) == list(range(side * side))
    # each leaf cluster of 64 points spans a compact patch, far from the whole mesh
    spans = [np.ptp(p[order[i : i + leaf]], axis=0).max() for i in range(0, order.size, leaf)]
    assert max(spans) < side / 2 and np.mean(spans) < side / 3


def test_scrambled_kernel_is_coded_in_cluster_order_and_restored(clustered_blob):
    a, blob = clustered_blob
    info = errbound.info(blob)
    assert "cluster-order" in info["sections"] and info["stages"][0]["name"] == "cluster-order"
    assert low_rank_blocks(blob) > 0
    check_roundtrip(a, errbound.decompress(blob), "abs", 1e-3, blob)
    sz_size = len(errbound.compress(a, "sz", abs=1e-3))
    assert len(blob) < sz_size / 2  # the reordering is what makes low rank pay here


def test_natural_order_is_kept_where_reordering_does_not_pay():
    a = kernel_matrix(512)  # sorted 1-D points: already in cluster order
    blob = errbound.compress(a, "hlr", abs=1e-4)
    assert "cluster-order" not in errbound.info(blob)["sections"]


def _order_edit(edit):
    from errbound.stages.coders.zstd import ZstdLossless

    def fn(obj, secs):
        for s in secs:
            if s[0] == "cluster-order":
                raw = bytearray(ZstdLossless().decompress(s[1], 1 << 20))
                edit(raw)
                s[1] = b"\x00" + bytes(raw)

    return fn


def _swap_shared(obj, secs):
    obj["stages"][0]["params"]["shared"] = not obj["stages"][0]["params"]["shared"]


@pytest.mark.parametrize(
    "forgery",
    [
        _order_edit(lambda raw: raw.__setitem__(slice(1, 3), raw[3:5])),  # an index twice
        _order_edit(lambda raw: raw.__setitem__(slice(1, 3), b"\xff\xff")),  # out of range
        _order_edit(lambda raw: raw.__setitem__(0, 4)),  # wrong index width
        _order_edit(lambda raw: raw.__delitem__(slice(-2, None))),  # truncated
        _swap_shared,
        lambda obj, secs: obj["stages"].pop(0),  # section without its stage
        lambda obj, secs: secs.pop(next(i for i, s in enumerate(secs) if s[0] == "cluster-order")),
    ],
    ids=["duplicate", "range", "width", "truncated", "shared-flag", "no-stage", "no-section"],
)
def test_damaged_cluster_orders_raise(clustered_blob, forgery):
    with pytest.raises(CorruptStreamError):
        errbound.decompress(_forge(clustered_blob[1], forgery))


# ------------------------------------------------------------------------------ tensor view


def mesh_kernel(side: int = 24) -> np.ndarray:
    """exp(-|p_i - p_j|) over a side x side mesh in row-major order: smooth along the mesh's
    axes, with a jump wherever a mesh row ends."""
    g = (np.arange(side) + 0.5) / side
    p = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return np.exp(-np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))).astype(np.float32)


@pytest.fixture(scope="module")
def tensor_view_blob():
    a = mesh_kernel()
    return a, errbound.compress(a, "hlr", abs=1e-3)


def test_candidate_views_are_common_divisors():
    from errbound.stages.transforms.tensor_view import candidate_views

    assert candidate_views((576, 576)) == [
        (576 // p, p, 576 // p, p) for p in (8, 9, 12, 16, 18, 24, 32, 36, 48, 64, 72)
    ]
    assert candidate_views((438, 450)) == []  # gcd 6: no period long enough


def test_mesh_kernel_is_coded_as_its_4d_view(tensor_view_blob):
    a, blob = tensor_view_blob
    stages = errbound.info(blob)["stages"]
    assert stages[0]["name"] == "tensor-view" and stages[0]["params"]["view"] == [24, 24, 24, 24]
    check_roundtrip(a, errbound.decompress(blob), "abs", 1e-3, blob)
    assert len(blob) < 0.6 * len(errbound.compress(a, "sz", abs=1e-3))


def _view(value):
    def fn(obj, secs):
        obj["stages"][0]["params"]["view"] = value

    return fn


@pytest.mark.parametrize(
    "forgery",
    [
        _view([24, 24, 24, 25]),
        _view([576, 576, 1, 1, 1]),
        _view("24x24"),
        _view([24, 24, -24, -24]),
        lambda obj, secs: next(s for s in obj["stages"] if s["name"] == "lowrank")["params"].update(blocks=3),
    ],
    ids=["size", "rank5", "type", "negative", "low-rank-plan"],
)
def test_damaged_tensor_views_raise(tensor_view_blob, forgery):
    with pytest.raises(CorruptStreamError):
        errbound.decompress(_forge(tensor_view_blob[1], forgery))


# ------------------------------------------------------------------------------ property test of both orderings


def mesh_matrix(side: int, scrambled: bool, dtype, seed: int) -> np.ndarray:
    g = (np.arange(side) + 0.5) / side
    p = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    if scrambled:
        p = p[np.random.default_rng(seed).permutation(p.shape[0])]
    return np.exp(-np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))).astype(dtype)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(data=st.data())
def test_bound_holds_on_mesh_matrices_in_any_order(data):
    # a leaf of 32 puts 144^2-256^2 matrices in reach of both new stages: the tensor view
    # (row-major mesh order) and the cluster order (scrambled), at coarse bounds
    side = data.draw(st.integers(12, 16), label="mesh side")
    scrambled = data.draw(st.booleans(), label="scrambled")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    x = mesh_matrix(side, scrambled, dtype, data.draw(st.integers(0, 2**16), label="seed"))
    if data.draw(st.booleans(), label="specials"):
        flat = x.reshape(-1)
        for pos, value in zip(
            np.random.default_rng(side).choice(x.size, 4, replace=False), (np.nan, np.inf, -np.inf, -0.0), strict=True
        ):
            flat[pos] = value
    if data.draw(st.booleans(), label="ulps"):
        mode, value = "abs", data.draw(st.integers(1, 16), label="k") * float(np.spacing(dtype(1.0)))
    else:
        mode, value = "rel", 10.0 ** -data.draw(st.floats(1.5, 5.0), label="-log10 rel")
    roundtrip(x, "hlr", mode, value, leaf=32)


@pytest.mark.parametrize("scrambled, stage", [(False, "tensor-view"), (True, "cluster-order")])
def test_the_property_test_reaches_both_new_stages(scrambled, stage):
    blob = errbound.compress(mesh_matrix(12, scrambled, np.float32, 0), "hlr", rel=1e-2, leaf=32)
    assert errbound.info(blob)["stages"][0]["name"] == stage


def test_tile_ranks_take_each_sampled_tile_once(monkeypatch):
    """Along an axis of at most leaf + 3 values the sampling grid's starts repeat: a 128x128
    chunk took the same tile's SVD 25 times (two thirds of its compress time)."""
    svds = []
    svd = np.linalg.svd

    def counting(a, *args, **kwargs):
        svds.append(a.shape)
        return svd(a, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "svd", counting)
    rng = np.random.default_rng(0)
    policy = lr.Policy()
    for shape, tiles in (((128, 128), 1), ((130, 131), 3 * 4), ((128, 700), 5), ((600, 700), 25)):
        svds.clear()
        planner = lr.Planner(rng.standard_normal(shape), 1e-3, None, policy)
        assert len(planner.tile_ranks()) == tiles and len(svds) == tiles, shape
    # promising() screens whole leaf tiles of the quadtree (starts at multiples of the
    # leaf, up to 5 per axis): 4 SVDs on a 256x256 chunk where the spread grid took 25
    # overlapping ones, 4 x 5 on 600x700
    for shape, tiles in (((256, 256), 4), ((600, 700), 20), ((100, 900), 5)):
        svds.clear()
        assert not lr.Planner(rng.standard_normal(shape), 1e-3, None, policy).promising()
        assert len(svds) == tiles and set(svds) == {(min(shape[0], 128), 128)}, shape
    # and stops at the first low-rank tile: a rank-one matrix needs one
    svds.clear()
    low = np.outer(np.linspace(1, 2, 600), np.linspace(-1, 1, 700))
    assert lr.Planner(low, 1e-3, None, policy).promising()
    assert len(svds) == 1


def test_the_encoder_runs_blas_on_one_thread_found_once():
    from errbound.codecs.hlr import policy

    setter, getter = policy._openblas_thread_functions()
    if getter is None:
        pytest.skip("numpy's BLAS is not OpenBLAS here: single_threaded_blas changes nothing")
    before = getter()
    with policy.single_threaded_blas():
        assert getter() == 1
    assert getter() == before
    # the libraries are looked up once a process (1 ms a compress when read every time)
    looked_up = policy._openblas_thread_functions.cache_info().misses
    with policy.single_threaded_blas():
        pass
    assert policy._openblas_thread_functions.cache_info().misses == looked_up
