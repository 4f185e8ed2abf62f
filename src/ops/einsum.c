/* einsum.c — parse and shape inference of Einsum (https://onnx.ai/onnx/operators/onnx__Einsum.html):
 * an equation "ij,jk->ik" over the inputs, with an implicit output (labels seen once, in ASCII
 * order, after the ellipsis dims), "..." broadcast dims, and repeated labels (diagonals).
 * The plan built here (label sizes, per-input strides) drives src/backends/ref/einsum.c.
 * Tested by test_einsum*. */
#include "nn_internal.h"

#include <string.h>

#define ELL 52 /* label of the first ellipsis dim */

kiln_status kiln_parse_einsum(kiln_node *node, kiln_attrs *attrs) {
    kiln_einsum_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    char raw[256];
    KILN_TRY(kiln_attr_string(attrs, "equation", "", raw, sizeof raw));
    int k = 0;
    for (const char *c = raw; *c; c++)
        if (*c != ' ') p->equation[k++] = *c;
    p->equation[k] = 0;
    if (!k) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute equation is missing or empty");
    for (const char *c = p->equation; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == ',' || *c == '.' || *c == '-' || *c == '>';
        if (!ok) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "equation '%s' has character '%c'", raw, *c);
    }
    return KILN_STATUS_OK;
}

static int letter_label(char c) { return c >= 'a' && c <= 'z' ? c - 'a' : c - 'A' + 26; }

/* Parses one term [s, e) into labels; -1 stands for the ellipsis. Returns the count or -1. */
static int parse_term(const char *s, const char *e, int *labels, int cap) {
    int n = 0, ell = 0;
    while (s < e) {
        if (*s == '.') {
            if (e - s < 3 || s[1] != '.' || s[2] != '.' || ell++) return -1;
            s += 3;
            if (n >= cap) return -1;
            labels[n++] = -1;
            continue;
        }
        if (*s == ',' || *s == '-' || *s == '>' || n >= cap) return -1;
        labels[n++] = letter_label(*s++);
    }
    return n;
}

kiln_status kiln_einsum_make_plan(const kiln_node *node, kiln_tensor *const *in, kiln_einsum_plan *plan) {
    const kiln_einsum_params *p = node->params;
    const char *eq = p->equation, *arrow = strstr(eq, "->");
    const char *lhs_end = arrow ? arrow : eq + strlen(eq);
    int n_in = node->n_declared;
    if (n_in > KILN_EINSUM_MAX_INPUTS)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "%d inputs (at most %d)", n_in, KILN_EINSUM_MAX_INPUTS);
    memset(plan, 0, sizeof *plan);
    int64_t size[KILN_EINSUM_MAX_LABELS];
    int count[KILN_EINSUM_MAX_LABELS] = {0};
    for (int l = 0; l < KILN_EINSUM_MAX_LABELS; l++) size[l] = -2; /* unused */
    int terms_labels[KILN_EINSUM_MAX_INPUTS][KILN_MAX_RANK + 1], terms_n[KILN_EINSUM_MAX_INPUTS];
    int ell_max = 0, t = 0;
    const char *s = eq;
    char d1[160];
    while (1) {
        const char *e = s;
        while (e < lhs_end && *e != ',') e++;
        if (t >= n_in)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "equation '%s' has more terms than the %d inputs", eq, n_in);
        terms_n[t] = parse_term(s, e, terms_labels[t], KILN_MAX_RANK + 1);
        if (terms_n[t] < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "equation '%s' is malformed", eq);
        const kiln_tensor *x = in[t];
        bool has_ell = false;
        for (int i = 0; i < terms_n[t]; i++) has_ell |= terms_labels[t][i] < 0;
        int ell_rank = x->rank - (terms_n[t] - has_ell);
        if (ell_rank < 0 || (!has_ell && ell_rank != 0))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "term %d of '%s' does not fit input %s", t, eq,
                                   kiln_dims_str(x->rank, x->dims, d1, sizeof d1));
        if (ell_rank > ell_max) ell_max = ell_rank;
        t++;
        if (e >= lhs_end) break;
        s = e + 1;
    }
    if (t != n_in) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "equation '%s' has %d terms for %d inputs", eq, t, n_in);
    /* label sizes and strides */
    for (t = 0; t < n_in; t++) {
        const kiln_tensor *x = in[t];
        int64_t str[KILN_MAX_RANK];
        kiln_contiguous_strides(x->rank, x->dims, str);
        bool has_ell = false;
        for (int i = 0; i < terms_n[t]; i++) has_ell |= terms_labels[t][i] < 0;
        int ell_rank = x->rank - (terms_n[t] - has_ell), axis = 0;
        for (int i = 0; i < terms_n[t]; i++) {
            int n_axes = terms_labels[t][i] < 0 ? ell_rank : 1;
            for (int j = 0; j < n_axes; j++, axis++) {
                int l = terms_labels[t][i] < 0 ? ELL + ell_max - ell_rank + j : terms_labels[t][i];
                int64_t dim = x->dims[axis];
                count[l]++;
                bool bcast = l >= ELL && dim == 1;
                if (size[l] == -2 || (l >= ELL && size[l] == 1)) size[l] = dim;
                else if (dim >= 0 && size[l] >= 0 && dim != size[l] && !bcast)
                    return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                           "equation '%s': a label has sizes %lld and %lld (input %d %s)", eq,
                                           (long long)size[l], (long long)dim, t,
                                           kiln_dims_str(x->rank, x->dims, d1, sizeof d1));
                else if (dim >= 0 && size[l] < 0 && !bcast) size[l] = dim;
                if (!bcast) plan->in_stride[t][l] += str[axis];
            }
        }
    }
    /* output labels */
    int out_labels[KILN_EINSUM_MAX_LABELS], n_out = 0;
    if (arrow) {
        int lab[KILN_MAX_RANK + 1];
        int n = parse_term(arrow + 2, arrow + 2 + strlen(arrow + 2), lab, KILN_MAX_RANK + 1);
        if (n < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "equation '%s' is malformed", eq);
        for (int i = 0; i < n; i++) {
            if (lab[i] < 0) {
                for (int j = 0; j < ell_max; j++) out_labels[n_out++] = ELL + j;
                continue;
            }
            if (size[lab[i]] == -2)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "equation '%s': output label '%c' is not in an input",
                                       eq, lab[i] < 26 ? 'a' + lab[i] : 'A' + lab[i] - 26);
            for (int j = 0; j < n_out; j++)
                if (out_labels[j] == lab[i])
                    return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "equation '%s' repeats an output label", eq);
            out_labels[n_out++] = lab[i];
        }
    } else {
        for (int j = 0; j < ell_max; j++) out_labels[n_out++] = ELL + j;
        for (int l = 26; l < 52; l++) /* ASCII order: upper case first */
            if (count[l] == 1) out_labels[n_out++] = l;
        for (int l = 0; l < 26; l++)
            if (count[l] == 1) out_labels[n_out++] = l;
    }
    if (n_out > KILN_MAX_RANK) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "output rank %d", n_out);
    plan->out_rank = n_out;
    for (int i = 0; i < n_out; i++) plan->out_dims[i] = size[out_labels[i]] == -2 ? 1 : size[out_labels[i]];
    int64_t ostr[KILN_MAX_RANK];
    kiln_contiguous_strides(n_out, plan->out_dims, ostr);
    for (int i = 0; i < n_out; i++) plan->out_stride[out_labels[i]] = ostr[i];
    plan->n_labels = KILN_EINSUM_MAX_LABELS;
    for (int l = 0; l < KILN_EINSUM_MAX_LABELS; l++) plan->size[l] = size[l] == -2 ? 1 : size[l];
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_einsum(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, -1));
    const kiln_tensor *x = in[0];
    bool is_float = kiln_nn_is_float(x->dtype);
    if (!is_float && !kiln_dtype_is_int(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    for (int i = 1; i < node->n_declared; i++)
        if (!in[i] || in[i]->dtype != x->dtype)
            return in[i] ? kiln_node_bad_dtype(node, i, in[i]->dtype)
                         : kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is omitted", i);
    out[0].dtype = x->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    kiln_einsum_plan *plan = kiln_malloc(sizeof *plan);
    if (!plan) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s = kiln_einsum_make_plan(node, in, plan);
    if (s == KILN_STATUS_OK) {
        out[0].rank = plan->out_rank;
        for (int i = 0; i < plan->out_rank; i++) out[0].dims[i] = plan->out_dims[i];
    }
    free(plan);
    return s;
}
