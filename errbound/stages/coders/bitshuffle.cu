/* Shared with the other fz kernels: the host assembles this file with prequantize.cu,
   integer_lorenzo.cu and bitshuffle.cu after typedefs for one (float, code) type pair:
   real_t, code_t, ucode_t (unsigned code_t), BITS (its width), BLOCK_VALUES and
   WORDS_PER_PLANE (bitshuffle.py's BLOCK and WORDS), and the macros KERNEL (a kernel's
   declaration), GLOBAL_INDEX() (the thread's index) and POPCOUNT64. See codecs/fz/gpu.py. */

__device__ inline ucode_t zigzag(code_t v) {
    return ((ucode_t)v << 1) ^ (ucode_t)(v >> (BITS - 1));
}

/* The GPU twin of bitshuffle.py: per block, the OR of the zigzagged residuals = the bitmap of its planes */
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
