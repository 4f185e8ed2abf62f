/* rnn.c — parse and shape inference of the recurrent layers:
 *   RNN   https://onnx.ai/onnx/operators/onnx__RNN.html   (1 gate,  activation f)
 *   GRU   https://onnx.ai/onnx/operators/onnx__GRU.html   (gates zrh, activations f g)
 *   LSTM  https://onnx.ai/onnx/operators/onnx__LSTM.html  (gates iofc, activations f g h)
 * Inputs X, W, R, B, sequence_lens, initial_h (, initial_c, P for LSTM); outputs Y, Y_h
 * (, Y_c), each optional. Attributes: direction, hidden_size, activations with their
 * activation_alpha / activation_beta, clip, input_forget (LSTM), linear_before_reset (GRU),
 * layout (0: time major, 1: batch major). The kernel is src/backends/ref/rnn.c.
 * Tested by test_rnn*, test_simple_rnn*, test_gru*, test_lstm*. */
#include "seq_internal.h"

/* Activation names as the spec spells them (matched without regard to case), whether they take
 * alpha / beta, and their defaults (those of the ONNX ops of the same name). */
static const struct {
    const char *name;
    seq_act_kind kind;
    bool uses_alpha, uses_beta;
    float alpha, beta;
} ACTS[] = {
    {"Relu", SEQ_ACT_RELU, false, false, 0.0f, 0.0f},
    {"Tanh", SEQ_ACT_TANH, false, false, 0.0f, 0.0f},
    {"Sigmoid", SEQ_ACT_SIGMOID, false, false, 0.0f, 0.0f},
    {"Affine", SEQ_ACT_AFFINE, true, true, 1.0f, 0.0f},
    {"LeakyRelu", SEQ_ACT_LEAKY_RELU, true, false, 0.01f, 0.0f},
    {"ThresholdedRelu", SEQ_ACT_THRESHOLDED_RELU, true, false, 1.0f, 0.0f},
    {"ScaledTanh", SEQ_ACT_SCALED_TANH, true, true, 1.0f, 1.0f},
    {"HardSigmoid", SEQ_ACT_HARD_SIGMOID, true, true, 0.2f, 0.5f},
    {"Elu", SEQ_ACT_ELU, true, false, 1.0f, 0.0f},
    {"Softsign", SEQ_ACT_SOFTSIGN, false, false, 0.0f, 0.0f},
    {"Softplus", SEQ_ACT_SOFTPLUS, false, false, 0.0f, 0.0f},
};

static bool same_name(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

/* The STRINGS attribute "activations" (graph.h has no getter for string lists). */
static kiln_status read_activation_names(const kiln_node *node, kiln_attrs *attrs, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    for (int i = 0; i < attrs->n; i++) {
        kiln_attr *a = &attrs->items[i];
        if (strcmp(a->name, "activations") != 0) continue;
        a->used = true;
        if (a->type != KILN_ATTR_STRINGS)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute activations should be a list of strings");
        *names = a->strings;
        *n = a->n;
    }
    return KILN_STATUS_OK;
}

static kiln_status parse_activations(kiln_node *node, kiln_attrs *attrs, seq_rnn_params *p) {
    static const char *defaults[3][3] = {{"Tanh"}, {"Sigmoid", "Tanh"}, {"Sigmoid", "Tanh", "Tanh"}};
    char **names;
    int n, na = 0, nb = 0, ia = 0, ib = 0;
    float *alpha = NULL, *beta = NULL;
    bool present;
    KILN_TRY(read_activation_names(node, attrs, &names, &n));
    KILN_TRY(kiln_attr_floats(attrs, "activation_alpha", &alpha, &na, &present));
    kiln_status s = kiln_attr_floats(attrs, "activation_beta", &beta, &nb, &present);
    int total = p->acts_per_dir * p->num_directions;
    if (s == KILN_STATUS_OK && n && n != total && n != p->acts_per_dir)
        s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute activations has %d names, expected %d", n, total);
    for (int k = 0; s == KILN_STATUS_OK && k < total; k++) {
        const char *name = n ? names[k % n] : defaults[p->acts_per_dir - 1][k % p->acts_per_dir];
        int f = -1;
        for (int j = 0; j < (int)(sizeof ACTS / sizeof ACTS[0]); j++)
            if (same_name(name, ACTS[j].name)) f = j;
        if (f < 0) {
            s = kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "activation '%s' is not supported", name);
            break;
        }
        seq_act *act = &p->acts[k];
        act->kind = ACTS[f].kind;
        act->alpha = ACTS[f].alpha;
        act->beta = ACTS[f].beta;
        /* alpha and beta values are consumed in order by the activations that take them */
        if (ACTS[f].uses_alpha && ia < na) act->alpha = alpha[ia++];
        if (ACTS[f].uses_beta && ib < nb) act->beta = beta[ib++];
    }
    free(alpha);
    free(beta);
    return s;
}

kiln_status kiln_parse_rnn(kiln_node *node, kiln_attrs *attrs) {
    seq_rnn_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    p->gates = node->op == KILN_OP_RNN ? 1 : node->op == KILN_OP_GRU ? 3 : 4;
    p->acts_per_dir = node->op == KILN_OP_RNN ? 1 : node->op == KILN_OP_GRU ? 2 : 3;
    char dir[32];
    int64_t v;
    KILN_TRY(kiln_attr_string(attrs, "direction", "forward", dir, sizeof dir));
    if (strcmp(dir, "forward") == 0) p->num_directions = 1;
    else if (strcmp(dir, "reverse") == 0) p->num_directions = 1, p->reverse = true;
    else if (strcmp(dir, "bidirectional") == 0) p->num_directions = 2;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute direction = '%s' is not valid", dir);
    KILN_TRY(kiln_attr_int(attrs, "hidden_size", -1, &p->hidden_size));
    if (kiln_attr_has(attrs, "hidden_size") && p->hidden_size < 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute hidden_size = %lld is negative",
                               (long long)p->hidden_size);
    p->has_clip = kiln_attr_has(attrs, "clip");
    KILN_TRY(kiln_attr_float(attrs, "clip", 0.0f, &p->clip));
    if (p->has_clip && !(p->clip > 0.0f))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute clip = %g is not positive", (double)p->clip);
    KILN_TRY(kiln_attr_int(attrs, "layout", 0, &v));
    if (v != 0 && v != 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute layout = %lld is not 0 or 1", (long long)v);
    p->layout = (int)v;
    KILN_TRY(kiln_attr_int(attrs, "output_sequence", 0, &v)); /* opset 1 only; Y is always computed */
    if (node->op == KILN_OP_LSTM) {
        KILN_TRY(kiln_attr_int(attrs, "input_forget", 0, &v));
        p->input_forget = v != 0;
    }
    if (node->op == KILN_OP_GRU) {
        KILN_TRY(kiln_attr_int(attrs, "linear_before_reset", 0, &v));
        p->linear_before_reset = v != 0;
    }
    return parse_activations(node, attrs, p);
}

kiln_status kiln_seq_rnn_geom(const kiln_node *node, kiln_tensor *const *in, seq_rnn_geom *g) {
    const seq_rnn_params *p = node->params;
    const kiln_tensor *x = in[0], *w = in[1], *r = in[2];
    char s1[160], s2[160];
    g->dirs = p->num_directions;
    g->seq = x->rank == 3 ? x->dims[p->layout ? 1 : 0] : KILN_DIM_UNKNOWN;
    g->batch = x->rank == 3 ? x->dims[p->layout ? 0 : 1] : KILN_DIM_UNKNOWN;
    g->input = x->rank == 3 ? x->dims[2] : KILN_DIM_UNKNOWN;
    g->hidden = p->hidden_size;
    if (g->hidden < 0 && r->rank == 3) g->hidden = r->dims[2];
    if (g->hidden < 0 && w->rank == 3 && w->dims[1] >= 0) g->hidden = w->dims[1] / p->gates;
    if (x->rank >= 0 && x->rank != 3)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s must have rank 3",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    /* expected shapes of the other inputs; -1 where not known */
    int64_t gh = g->hidden >= 0 ? p->gates * g->hidden : KILN_DIM_UNKNOWN;
    int64_t state[3] = {g->dirs, g->batch, g->hidden};
    if (p->layout) state[0] = g->batch, state[1] = g->dirs;
    const struct {
        int idx;
        const char *name;
        int rank;
        int64_t dims[3];
    } want[] = {
        {1, "W", 3, {g->dirs, gh, g->input}},
        {2, "R", 3, {g->dirs, gh, g->hidden}},
        {3, "B", 2, {g->dirs, gh >= 0 ? 2 * gh : KILN_DIM_UNKNOWN}},
        {4, "sequence_lens", 1, {g->batch}},
        {5, "initial_h", 3, {state[0], state[1], state[2]}},
        {6, "initial_c", 3, {state[0], state[1], state[2]}},
        {7, "P", 2, {g->dirs, g->hidden >= 0 ? 3 * g->hidden : KILN_DIM_UNKNOWN}},
    };
    for (int k = 0; k < (int)(sizeof want / sizeof want[0]); k++) {
        const kiln_tensor *t = seq_in(node, in, want[k].idx);
        if (!t || t->rank < 0) continue;
        bool ok = t->rank == want[k].rank;
        for (int i = 0; ok && i < t->rank; i++)
            ok = t->dims[i] < 0 || want[k].dims[i] < 0 || t->dims[i] == want[k].dims[i];
        if (!ok)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s does not match the expected %s", want[k].name,
                                   kiln_dims_str(t->rank, t->dims, s1, sizeof s1),
                                   kiln_dims_str(want[k].rank, want[k].dims, s2, sizeof s2));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_rnn(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_rnn_params *p = node->params;
    int max_in = node->op == KILN_OP_LSTM ? 8 : 6, max_out = node->op == KILN_OP_LSTM ? 3 : 2;
    KILN_TRY(kiln_node_check_arity(node, 3, max_in));
    if (node->n_outputs > max_out)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, at most %d", node->n_outputs, max_out);
    kiln_dtype t = in[0]->dtype;
    if (!kiln_dtype_is_float(t)) return kiln_node_bad_dtype(node, 0, t);
    for (int i = 1; i < node->n_declared; i++) {
        const kiln_tensor *x = seq_in(node, in, i);
        if (x && i == 4 && x->dtype != KILN_DTYPE_I32) return kiln_node_bad_dtype(node, i, x->dtype);
        if (x && i != 4 && x->dtype != t) return kiln_node_bad_dtype(node, i, x->dtype);
    }
    seq_rnn_geom g;
    KILN_TRY(kiln_seq_rnn_geom(node, in, &g));
    for (int j = 0; j < node->n_outputs; j++) {
        out[j].dtype = t;
        out[j].rank = j == 0 ? 4 : 3;
    }
    int64_t y[4] = {g.seq, g.dirs, g.batch, g.hidden}, yh[3] = {g.dirs, g.batch, g.hidden};
    if (p->layout) {
        y[0] = g.batch, y[1] = g.seq, y[2] = g.dirs;
        yh[0] = g.batch, yh[1] = g.dirs;
    }
    if (node->n_outputs > 0) memcpy(out[0].dims, y, sizeof y);
    for (int j = 1; j < node->n_outputs; j++) memcpy(out[j].dims, yh, sizeof yh);
    return KILN_STATUS_OK;
}
