/* Shared with the other fz kernels: the host assembles this file with prequantize.cu,
   integer_lorenzo.cu and bitshuffle.cu after typedefs for one (float, code) type pair:
   real_t, code_t, ucode_t (unsigned code_t), BITS (its width), BLOCK_VALUES and
   WORDS_PER_PLANE (bitshuffle.py's BLOCK and WORDS), and the macros KERNEL (a kernel's
   declaration), GLOBAL_INDEX() (the thread's index) and POPCOUNT64. See codecs/fz/gpu.py. */

/* The GPU twin of prequantize.py: q = floor(x / 2eb + 0.5); points off the grid get 0; bad = reconstruction
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
