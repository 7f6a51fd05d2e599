"""CUDA kernels of the fz stages (prequantize, integer Lorenzo, bit shuffle), beside the
numba kernels in prequantize.py, integer_lorenzo.py and bitshuffle.py.

Each kernel computes, per thread, exactly the expression its CPU twin computes per element:
the same float64 operations with round-to-nearest intrinsics (``__dmul_rn``/``__dadd_rn``
are never contracted into FMAs, and the module is also built with ``--fmad=false``), the
same modular integer arithmetic, the same stream layout. So a GPU stream is byte-identical
to a CPU stream and either side decodes the other's.

The source is plain C with three macros, so that the tests can also compile it with g++ and
check it against the numba kernels on a machine without a GPU (tests/test_gpu_kernels.py).
"""

from __future__ import annotations

from .bitshuffle import BLOCK, WORDS

_TYPES = {
    ("float32", "int32"): ("float", "int", "unsigned int", 32),
    ("float32", "int64"): ("float", "long long", "unsigned long long", 64),
    ("float64", "int32"): ("double", "int", "unsigned int", 32),
    ("float64", "int64"): ("double", "long long", "unsigned long long", 64),
}

_PRELUDE_CUDA = """
#define GLOBAL_INDEX() ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define POPCOUNT64(x) __popcll(x)
#define KERNEL extern "C" __global__
"""

_BODY = r"""
typedef REAL real_t;
typedef CODE code_t;
typedef UCODE ucode_t;
#define BITS NBITS
#define BLOCK_VALUES BLOCKV
#define WORDS_PER_PLANE WORDSV

__device__ inline ucode_t zigzag(code_t v) {
    return ((ucode_t)v << 1) ^ (ucode_t)(v >> (BITS - 1));
}

/* prequantize.py: q = floor(x / 2eb + 0.5); points off the grid get 0; bad = reconstruction
   misses eb in the output dtype, or x is NaN/Inf/-0.0 */
KERNEL void fz_prequantize(const real_t* x, long long n, double step, double inv_step, double eb,
                           double limit, code_t* q, unsigned char* bad) {
    long long i = GLOBAL_INDEX();
    if (i >= n) return;
    double xf = (double)x[i];
    double qf = __dmul_rn(xf, inv_step);
    int inside = fabs(qf) < limit;
    long long qi = (long long)floor(__dadd_rn(inside ? qf : 0.0, 0.5));
    q[i] = (code_t)qi;
    real_t recon = (real_t)__dmul_rn((double)qi, step);
    int ok = fabs(__dadd_rn((double)recon, -xf)) <= eb;
    bad[i] = (!ok || (xf == 0.0 && signbit(xf))) ? 1 : 0;
}

KERNEL void fz_dequantize(const code_t* q, long long n, double step, real_t* out) {
    long long i = GLOBAL_INDEX();
    if (i >= n) return;
    out[i] = (real_t)__dmul_rn((double)q[i], step);
}

/* integer_lorenzo.py: mixed difference over the 2x2x2 corner behind a point, 3-D view,
   outside = 0, modular arithmetic */
KERNEL void fz_residual(const code_t* q, code_t* r, long long n0, long long n1, long long n2) {
    long long i = GLOBAL_INDEX();
    if (i >= n0 * n1 * n2) return;
    long long j = i % n2, row = i / n2, i1 = row % n1, i0 = row / n1;
    long long s1 = n2, s0 = n1 * n2;
    ucode_t v = (ucode_t)q[i] - (j ? (ucode_t)q[i - 1] : (ucode_t)0);
    if (i1) v -= (ucode_t)q[i - s1] - (j ? (ucode_t)q[i - s1 - 1] : (ucode_t)0);
    if (i0) v -= (ucode_t)q[i - s0] - (j ? (ucode_t)q[i - s0 - 1] : (ucode_t)0);
    if (i0 && i1) v += (ucode_t)q[i - s0 - s1] - (j ? (ucode_t)q[i - s0 - s1 - 1] : (ucode_t)0);
    r[i] = (code_t)v;
}

/* bitshuffle.py: per block, the OR of the zigzagged residuals = the bitmap of its planes */
KERNEL void fz_block_masks(const code_t* r, long long n, unsigned long long* masks, long long nblocks) {
    long long b = GLOBAL_INDEX();
    if (b >= nblocks) return;
    unsigned long long acc = 0;
    long long lo = b * BLOCK_VALUES, hi = lo + BLOCK_VALUES < n ? lo + BLOCK_VALUES : n;
    for (long long i = lo; i < hi; i++) acc |= (unsigned long long)zigzag(r[i]);
    masks[b] = acc;
}

/* one thread per (block, plane, word): word w of plane p holds bit p of values 32w..32w+31 */
KERNEL void fz_shuffle(const code_t* r, long long n, const unsigned long long* masks,
                       const long long* dense_off, const long long* sparse_off, int dense,
                       unsigned int* dense_planes, unsigned int* sparse_planes, long long nblocks) {
    long long t = GLOBAL_INDEX();
    if (t >= nblocks * BITS * WORDS_PER_PLANE) return;
    int w = (int)(t % WORDS_PER_PLANE);
    int p = (int)((t / WORDS_PER_PLANE) % BITS);
    long long b = t / (WORDS_PER_PLANE * BITS);
    unsigned long long m = masks[b];
    if (!((m >> p) & 1ULL)) return;
    unsigned int word = 0;
    long long base = b * BLOCK_VALUES + 32LL * w;
    for (int k = 0; k < 32; k++) {
        long long i = base + k;
        if (i < n) word |= (unsigned int)((zigzag(r[i]) >> p) & 1) << k;
    }
    unsigned long long below = m & ((1ULL << p) - 1ULL);
    unsigned long long low = dense >= 64 ? ~0ULL : ((1ULL << dense) - 1ULL);
    if (p < dense)
        dense_planes[dense_off[b] + (long long)POPCOUNT64(below) * WORDS_PER_PLANE + w] = word;
    else
        sparse_planes[sparse_off[b] + (long long)POPCOUNT64(below & ~low) * WORDS_PER_PLANE + w] = word;
}

KERNEL void fz_unshuffle(const unsigned long long* masks, const long long* dense_off,
                         const long long* sparse_off, int dense, const unsigned int* dense_planes,
                         const unsigned int* sparse_planes, long long n, code_t* r) {
    long long i = GLOBAL_INDEX();
    if (i >= n) return;
    long long b = i / BLOCK_VALUES;
    int w = (int)((i % BLOCK_VALUES) / 32), k = (int)(i % 32);
    unsigned long long m = masks[b];
    ucode_t u = 0;
    long long d = dense_off[b] + w, s = sparse_off[b] + w;
    for (int p = 0; p < BITS; p++) {
        if (!((m >> p) & 1ULL)) continue;
        unsigned int word;
        if (p < dense) { word = dense_planes[d]; d += WORDS_PER_PLANE; }
        else { word = sparse_planes[s]; s += WORDS_PER_PLANE; }
        u |= (ucode_t)((word >> k) & 1U) << p;
    }
    r[i] = (code_t)((u >> 1) ^ ((ucode_t)0 - (u & 1)));
}
"""

KERNEL_NAMES = ("fz_prequantize", "fz_dequantize", "fz_residual", "fz_block_masks", "fz_shuffle", "fz_unshuffle")


def kernel_source(real: str, code: str, prelude: str = _PRELUDE_CUDA) -> str:
    """The kernels for one (float dtype, code dtype) pair, e.g. ("float32", "int32")."""
    c_real, c_code, c_ucode, bits = _TYPES[(real, code)]
    body = (_BODY.replace("UCODE", c_ucode).replace("REAL", c_real).replace("CODE", c_code)
            .replace("NBITS", str(bits)).replace("BLOCKV", str(BLOCK)).replace("WORDSV", str(WORDS)))
    return prelude + body
