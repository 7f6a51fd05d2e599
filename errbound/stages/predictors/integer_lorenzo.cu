/* Shared with the other fz kernels: the host assembles this file with prequantize.cu,
   integer_lorenzo.cu and bitshuffle.cu after typedefs for one (float, code) type pair:
   real_t, code_t, ucode_t (unsigned code_t), BITS (its width), BLOCK_VALUES and
   WORDS_PER_PLANE (bitshuffle.py's BLOCK and WORDS), and the macros KERNEL (a kernel's
   declaration), GLOBAL_INDEX() (the thread's index) and POPCOUNT64. See codecs/fz/gpu.py. */

/* The GPU twin of integer_lorenzo.py: mixed difference over the 2x2x2 corner behind a point, 3-D view,
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
