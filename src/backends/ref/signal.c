/* signal.c — reference kernels of DFT and STFT (https://onnx.ai/onnx/operators/onnx__DFT.html,
 * onnx__STFT.html): direct O(N^2) transforms in double with a twiddle table of N entries
 * (index k*n mod N, so every angle is computed exactly once), no FFT.
 *
 *   forward   y[k] = sum_n x[n] e^(-2 pi i k n / N), the input cut or zero-padded to N,
 *             k < N, or k <= N/2 when onesided (RFFT)
 *   inverse   x[n] = 1/N sum_k y[k] e^(+2 pi i k n / N)
 *   IRFFT     (inverse and onesided) the first N/2 + 1 bins extended by Hermitian symmetry,
 *             the imaginary parts of bin 0 and (N even) bin N/2 ignored, real output
 *             (last dim 1), as numpy.fft.irfft
 *   STFT      frames x[f * step + n] * window[n], n < frame_length, each transformed forward.
 * Tested by test_dft*, test_stft*. */
#include "../../ops/seq_internal.h"

typedef struct twiddle {
    int64_t n;
    double *c, *s; /* cos and sin of 2 pi j / n */
} twiddle;

static kiln_status twiddle_init(const kiln_node *node, twiddle *t, int64_t n) {
    size_t bytes;
    t->n = n;
    t->c = t->s = NULL;
    if (kiln_checked_bytes(n ? n : 1, sizeof(double), &bytes) != KILN_STATUS_OK || !(t->c = kiln_malloc(bytes)) ||
        !(t->s = kiln_malloc(bytes))) {
        free(t->c);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "node '%s': no memory for a DFT of length %lld", node->name,
                          (long long)n);
    }
    for (int64_t j = 0; j < n; j++) {
        double a = 2.0 * 3.14159265358979323846 * (double)j / (double)n;
        t->c[j] = cos(a);
        t->s[j] = sin(a);
    }
    return KILN_STATUS_OK;
}

/* n zeroed doubles of scratch, NULL (with the error set) when too big or out of memory. */
static double *scratch(const kiln_node *node, int64_t n) {
    size_t bytes;
    double *p = NULL;
    if (n >= 0 && kiln_checked_bytes(n, sizeof(double), &bytes) == KILN_STATUS_OK)
        p = kiln_calloc(bytes ? bytes : 1, 1);
    if (!p) kiln_error(KILN_STATUS_OUT_OF_MEMORY, "node '%s': no memory for %lld doubles of scratch", node->name, (long long)n);
    return p;
}

static void twiddle_free(twiddle *t) {
    free(t->c);
    free(t->s);
}

/* out[k] for k < n_out: sum over n < n_x of x[n] e^(sign 2 pi i k n / N), times scale. */
static void dft_line(const twiddle *t, const double *xr, const double *xi, int64_t n_x, int64_t n_out, int sign,
                     double scale, double *yr, double *yi) {
    int64_t N = t->n;
    for (int64_t k = 0; k < n_out; k++) {
        double sr = 0.0, si = 0.0;
        int64_t j = 0, step = k % N; /* j = k * n mod N */
        for (int64_t n = 0; n < n_x; n++) {
            double c = t->c[j], s = sign * t->s[j];
            sr += xr[n] * c - xi[n] * s;
            si += xr[n] * s + xi[n] * c;
            j += step;
            if (j >= N) j -= N;
        }
        yr[k] = sr * scale;
        yi[k] = si * scale;
    }
}

static kiln_status dft(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *y) {
    const seq_signal_params *p = node->params;
    const kiln_tensor *x = in[0];
    seq_dft_geom g;
    KILN_TRY(kiln_seq_dft_geom(node, in, &g));
    KILN_ASSERT(g.known);
    int64_t N = g.n;
    if (kiln_shape_count(y->rank, y->dims) == 0 || N == 0) return KILN_STATUS_OK;
    bool irfft = p->inverse && p->onesided;
    /* the line fed to the transform: N complex values (the input cut, zero-padded or, for
     * IRFFT, extended by symmetry), and the output line */
    double *buf = scratch(node, N < INT64_MAX / 8 ? 4 * N : -1); /* n_out <= N */
    twiddle t;
    if (!buf) return KILN_STATUS_OUT_OF_MEMORY;
    kiln_status s = twiddle_init(node, &t, N);
    if (s != KILN_STATUS_OK) {
        free(buf);
        return s;
    }
    double *xr = buf, *xi = buf + N, *yr = buf + 2 * N, *yi = buf + 3 * N;
    int64_t used = irfft ? (g.n_in < N / 2 + 1 ? g.n_in : N / 2 + 1) : (g.n_in < N ? g.n_in : N);
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
            for (int64_t n = 0; n < N; n++) xr[n] = xi[n] = 0.0;
            for (int64_t n = 0; n < used; n++) {
                int64_t e = ((o * g.n_in + n) * g.inner + i) * g.c_in;
                xr[n] = kiln_load_f64(x->dtype, x->data, e);
                xi[n] = g.c_in == 2 ? kiln_load_f64(x->dtype, x->data, e + 1) : 0.0;
            }
            if (irfft) {
                xi[0] = 0.0;
                if (N % 2 == 0) xi[N / 2] = 0.0;
                for (int64_t k = N / 2 + 1; k < N; k++) {
                    xr[k] = xr[N - k];
                    xi[k] = -xi[N - k];
                }
            }
            if (p->inverse) dft_line(&t, xr, xi, N, g.n_out, +1, 1.0 / (double)N, yr, yi);
            else dft_line(&t, xr, xi, N, g.n_out, -1, 1.0, yr, yi);
            for (int64_t k = 0; k < g.n_out; k++) {
                int64_t e = ((o * g.n_out + k) * g.inner + i) * g.c_out;
                kiln_store_f64(y->dtype, y->data, e, yr[k]);
                if (g.c_out == 2) kiln_store_f64(y->dtype, y->data, e + 1, yi[k]);
            }
        }
    twiddle_free(&t);
    free(buf);
    return KILN_STATUS_OK;
}

static kiln_status stft(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *y) {
    const kiln_tensor *x = in[0], *win = seq_in(node, in, 2);
    seq_stft_geom g;
    KILN_TRY(kiln_seq_stft_geom(node, in, &g));
    KILN_ASSERT(g.known);
    int64_t N = g.frame;
    if (kiln_shape_count(y->rank, y->dims) == 0) return KILN_STATUS_OK;
    double *buf = scratch(node, N < INT64_MAX / 8 ? 4 * N : -1);
    twiddle t;
    if (!buf) return KILN_STATUS_OUT_OF_MEMORY;
    kiln_status s = twiddle_init(node, &t, N);
    if (s != KILN_STATUS_OK) {
        free(buf);
        return s;
    }
    double *xr = buf, *xi = buf + N, *yr = buf + 2 * N, *yi = buf + 3 * N;
    for (int64_t b = 0; b < g.batch; b++)
        for (int64_t f = 0; f < g.frames; f++) {
            for (int64_t n = 0; n < N; n++) {
                int64_t e = (b * g.len + f * g.step + n) * g.c_in;
                double w = win ? kiln_load_f64(win->dtype, win->data, n) : 1.0;
                xr[n] = kiln_load_f64(x->dtype, x->data, e) * w;
                xi[n] = g.c_in == 2 ? kiln_load_f64(x->dtype, x->data, e + 1) * w : 0.0;
            }
            dft_line(&t, xr, xi, N, g.bins, -1, 1.0, yr, yi);
            for (int64_t k = 0; k < g.bins; k++) {
                int64_t e = ((b * g.frames + f) * g.bins + k) * 2;
                kiln_store_f64(y->dtype, y->data, e, yr[k]);
                kiln_store_f64(y->dtype, y->data, e + 1, yi[k]);
            }
        }
    twiddle_free(&t);
    free(buf);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_signal(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (node->op == KILN_OP_DFT) return dft(node, in, &out[0]);
    return stft(node, in, &out[0]);
}
