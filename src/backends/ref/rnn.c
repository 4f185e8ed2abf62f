/* rnn.c — reference kernels of RNN, GRU and LSTM (https://onnx.ai/onnx/operators/onnx__LSTM.html
 * and siblings), in double, one batch entry and one direction at a time (they are independent):
 *
 *   RNN   Ht = f(Xt Wi^T + Ht-1 Ri^T + Wbi + Rbi)
 *   GRU   zt = f(Xt Wz^T + Ht-1 Rz^T + Wbz + Rbz)      rt likewise with the r weights
 *         ht = g(Xt Wh^T + (rt . Ht-1) Rh^T + Rbh + Wbh)            linear_before_reset = 0
 *         ht = g(Xt Wh^T + rt . (Ht-1 Rh^T + Rbh) + Wbh)            linear_before_reset = 1
 *         Ht = (1 - zt) . ht + zt . Ht-1
 *   LSTM  it = f(Xt Wi^T + Ht-1 Ri^T + Pi . Ct-1 + Wbi + Rbi)
 *         ft = f(... + Pf . Ct-1 ...)    (ft = 1 - it with input_forget)
 *         ct = g(Xt Wc^T + Ht-1 Rc^T + Wbc + Rbc)       Ct = ft . Ct-1 + it . ct
 *         ot = f(... + Po . Ct ...)      Ht = ot . h(Ct)
 *
 * clip bounds every activation's input to [-clip, clip]. With sequence_lens, batch entry b
 * runs its first len[b] steps (the reverse direction from len[b] - 1 down to 0), Y is zero past
 * them and Y_h / Y_c hold the state after the last step run (zeros for a length of 0, as ONNX
 * Runtime does).
 * Tested by test_rnn*, test_simple_rnn*, test_gru*, test_lstm*. */
#include "../../ops/seq_internal.h"
#include "../../ops/nn_internal.h"

static double act(const seq_act *a, double x) {
    switch (a->kind) {
    case SEQ_ACT_RELU: return x > 0.0 ? x : 0.0;
    case SEQ_ACT_TANH: return tanh(x);
    case SEQ_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case SEQ_ACT_AFFINE: return a->alpha * x + a->beta;
    case SEQ_ACT_LEAKY_RELU: return x >= 0.0 ? x : a->alpha * x;
    case SEQ_ACT_THRESHOLDED_RELU: return x >= a->alpha ? x : 0.0;
    case SEQ_ACT_SCALED_TANH: return a->alpha * tanh(a->beta * x);
    case SEQ_ACT_HARD_SIGMOID: return fmin(fmax(a->alpha * x + a->beta, 0.0), 1.0);
    case SEQ_ACT_ELU: return x >= 0.0 ? x : a->alpha * (exp(x) - 1.0);
    case SEQ_ACT_SOFTSIGN: return x / (1.0 + fabs(x));
    case SEQ_ACT_SOFTPLUS: return x > 30.0 ? x : log1p(exp(x));
    }
    return x;
}

/* One layer's weights as doubles and its working vectors. */
typedef struct rnn_run {
    const seq_rnn_params *p;
    seq_rnn_geom g;
    double *w, *r, *b, *pp;  /* (dirs, G*H, I), (dirs, G*H, H), (dirs, 2*G*H), (dirs, 3*H); b, pp may be NULL */
    double *x, *h, *c;       /* one step's input (I), state (H), cell (H) */
    double *xw, *hr, *hn, *tmp; /* (G*H) input and recurrent products, next state (H), scratch (H) */
} rnn_run;

static double clip(const rnn_run *s, double v) {
    if (!s->p->has_clip) return v;
    return fmin(fmax(v, -(double)s->p->clip), (double)s->p->clip);
}

/* out[j] = sum_k m[j, k] v[k] for j < rows. */
static void matvec(const double *m, const double *v, int64_t rows, int64_t cols, double *out) {
    for (int64_t j = 0; j < rows; j++) {
        double acc = 0.0;
        for (int64_t k = 0; k < cols; k++) acc += m[j * cols + k] * v[k];
        out[j] = acc;
    }
}

/* One time step of direction d: s->x and s->h / s->c (previous) -> s->h / s->c (next). */
static void step(rnn_run *s, int d, kiln_op op) {
    int64_t H = s->g.hidden, I = s->g.input, G = s->p->gates, GH = G * H;
    const seq_act *acts = s->p->acts + d * s->p->acts_per_dir;
    const double *w = s->w + d * GH * I, *r = s->r + d * GH * H;
    const double *wb = s->b ? s->b + d * 2 * GH : NULL, *rb = wb ? wb + GH : NULL;
    matvec(w, s->x, GH, I, s->xw);
    matvec(r, s->h, GH, H, s->hr);
    for (int64_t j = 0; j < GH; j++) {
        s->xw[j] += wb ? wb[j] : 0.0; /* input side: + Wb */
        s->hr[j] += rb ? rb[j] : 0.0; /* recurrent side: + Rb */
    }
    if (op == KILN_OP_RNN) {
        for (int64_t j = 0; j < H; j++) s->hn[j] = act(&acts[0], clip(s, s->xw[j] + s->hr[j]));
    } else if (op == KILN_OP_GRU) {
        const double *xz = s->xw, *xr = s->xw + H, *xh = s->xw + 2 * H;
        const double *hz = s->hr, *hrr = s->hr + H, *hh = s->hr + 2 * H;
        double *rgate = s->tmp;
        for (int64_t j = 0; j < H; j++) rgate[j] = act(&acts[0], clip(s, xr[j] + hrr[j]));
        if (!s->p->linear_before_reset) { /* (r . H) Rh^T + Rbh: redo the h rows on r . H */
            double *rh = s->hn; /* borrowed: r . H, then the h-gate product */
            for (int64_t j = 0; j < H; j++) rh[j] = rgate[j] * s->h[j];
            double *prod = s->hr + 2 * H;
            matvec(r + 2 * H * H, rh, H, H, prod);
            for (int64_t j = 0; j < H; j++) prod[j] += rb ? rb[2 * H + j] : 0.0;
        }
        for (int64_t j = 0; j < H; j++) {
            double z = act(&acts[0], clip(s, xz[j] + hz[j]));
            double pre = s->p->linear_before_reset ? xh[j] + rgate[j] * hh[j] : xh[j] + hh[j];
            double ht = act(&acts[1], clip(s, pre));
            s->tmp[j] = (1.0 - z) * ht + z * s->h[j];
        }
        memcpy(s->hn, s->tmp, sizeof(double) * (size_t)H);
    } else { /* LSTM, gates i o f c */
        const double *p = s->pp ? s->pp + d * 3 * H : NULL; /* P: i o f */
        for (int64_t j = 0; j < H; j++) {
            double pi = p ? p[j] : 0.0, po = p ? p[H + j] : 0.0, pf = p ? p[2 * H + j] : 0.0;
            double c = s->c[j];
            double ig = act(&acts[0], clip(s, s->xw[j] + s->hr[j] + pi * c));
            double fg = s->p->input_forget ? 1.0 - ig
                                           : act(&acts[0], clip(s, s->xw[2 * H + j] + s->hr[2 * H + j] + pf * c));
            double cg = act(&acts[1], clip(s, s->xw[3 * H + j] + s->hr[3 * H + j]));
            double cn = fg * c + ig * cg;
            double og = act(&acts[0], clip(s, s->xw[H + j] + s->hr[H + j] + po * cn));
            s->tmp[j] = cn;
            s->hn[j] = og * act(&acts[2], cn);
        }
        memcpy(s->c, s->tmp, sizeof(double) * (size_t)H);
    }
    memcpy(s->h, s->hn, sizeof(double) * (size_t)H);
}

static void run_free(rnn_run *s) {
    free(s->w);
    free(s->r);
    free(s->b);
    free(s->pp);
    free(s->x);
}

kiln_status kiln_ref_rnn(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    rnn_run s;
    memset(&s, 0, sizeof s);
    s.p = node->params;
    KILN_TRY(kiln_seq_rnn_geom(node, in, &s.g));
    const seq_rnn_geom *g = &s.g;
    int64_t H = g->hidden, I = g->input, GH = s.p->gates * H, B = g->batch, T = g->seq, D = g->dirs;
    int layout = s.p->layout;
    const kiln_tensor *X = in[0], *lens = seq_in(node, in, 4), *h0 = seq_in(node, in, 5);
    const kiln_tensor *c0 = node->op == KILN_OP_LSTM ? seq_in(node, in, 6) : NULL;
    for (int64_t b = 0; lens && b < B; b++) {
        int64_t l = kiln_load_i64(lens->dtype, lens->data, b);
        if (l < 0 || l > T)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "sequence_lens[%lld] = %lld is outside [0, %lld]",
                                   (long long)b, (long long)l, (long long)T);
    }
    s.w = kiln_nn_to_f64(in[1]);
    s.r = kiln_nn_to_f64(in[2]);
    if (seq_in(node, in, 3)) s.b = kiln_nn_to_f64(in[3]);
    if (node->op == KILN_OP_LSTM && seq_in(node, in, 7)) s.pp = kiln_nn_to_f64(in[7]);
    size_t vec = (size_t)(I + 4 * H + 2 * GH); /* x, h, c, tmp, xw, hr, hn */
    s.x = kiln_calloc(vec ? vec : 1, sizeof(double));
    if (!s.w || !s.r || (seq_in(node, in, 3) && !s.b) || !s.x || (node->op == KILN_OP_LSTM && seq_in(node, in, 7) && !s.pp)) {
        run_free(&s);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "node '%s': out of memory for weights", node->name);
    }
    s.h = s.x + I;
    s.c = s.h + H;
    s.tmp = s.c + H;
    s.xw = s.tmp + H;
    s.hr = s.xw + GH;
    s.hn = s.hr + GH;
    kiln_tensor *Y = &out[0], *YH = node->n_outputs > 1 ? &out[1] : NULL, *YC = node->n_outputs > 2 ? &out[2] : NULL;
    for (int d = 0; d < D; d++) {
        bool reverse = d == 1 || s.p->reverse;
        for (int64_t b = 0; b < B; b++) {
            int64_t state = layout ? (b * D + d) * H : (d * B + b) * H; /* of (d, b, 0) in initial_h, Y_h */
            for (int64_t j = 0; j < H; j++) {
                s.h[j] = h0 ? kiln_load_f64(h0->dtype, h0->data, state + j) : 0.0;
                s.c[j] = c0 ? kiln_load_f64(c0->dtype, c0->data, state + j) : 0.0;
            }
            int64_t len = lens ? kiln_load_i64(lens->dtype, lens->data, b) : T;
            for (int64_t k = 0; k < len; k++) {
                int64_t t = reverse ? len - 1 - k : k;
                int64_t xoff = (layout ? b * T + t : t * B + b) * I;
                for (int64_t i = 0; i < I; i++) s.x[i] = kiln_load_f64(X->dtype, X->data, xoff + i);
                step(&s, d, (kiln_op)node->op);
                if (Y->data) {
                    int64_t yoff = (layout ? (b * T + t) * D + d : (t * D + d) * B + b) * H;
                    for (int64_t j = 0; j < H; j++) kiln_store_f64(Y->dtype, Y->data, yoff + j, s.h[j]);
                }
            }
            for (int64_t j = 0; len > 0 && j < H; j++) { /* a sequence of length 0 leaves zeros, as ONNX Runtime */
                if (YH && YH->data) kiln_store_f64(YH->dtype, YH->data, state + j, s.h[j]);
                if (YC && YC->data) kiln_store_f64(YC->dtype, YC->data, state + j, s.c[j]);
            }
        }
    }
    run_free(&s);
    return KILN_STATUS_OK;
}
