/* compare_invariant.c — user contracts on outputs, checked on every step of `kiln compare` for
 * both runners and reported as contract violations. The syntax (docs/compare.md):
 *
 *     NAME OP VALUE        OP: == != < <= > >=; VALUE a number, or the name of another input or
 *                          output of the same step (same element count, or one element)
 *     NAME:finite          no NaN and no Inf
 *     NAME:nondecreasing   every element >= its value at the step before (same runner);
 *     NAME:increasing      also :nonincreasing and :decreasing
 *     NAME:shape=1x*x2     the shape, '*' matching any size
 *
 * NAME is an output of the runner, else one of its inputs of that step. */
#include "compare.h"

#include "core/core.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

static const char *const op_text[] = {"==", "!=", "<", "<=", ">", ">="};

static void trim_copy(char *dst, size_t cap, const char *b, const char *e) {
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    size_t n = (size_t)(e - b) < cap - 1 ? (size_t)(e - b) : cap - 1;
    memcpy(dst, b, n);
    dst[n] = 0;
}

static int parse_shape(const char *s, cmp_invariant *inv) {
    inv->rank = 0;
    if (!*s) return 0; /* a scalar */
    for (;;) {
        if (inv->rank == KILN_MAX_RANK) return -1;
        if (*s == '*') {
            inv->dims[inv->rank++] = -1;
            s++;
        } else {
            char *e;
            long long v = strtoll(s, &e, 10);
            if (e == s || v < 0) return -1;
            inv->dims[inv->rank++] = v;
            s = e;
        }
        if (!*s) return 0;
        if (*s != 'x' && *s != 'X') return -1;
        s++;
    }
}

static int parse_keyword(const char *text, const char *colon, cmp_invariant *inv, char *err, size_t n) {
    static const struct { const char *word; int kind, op; } words[] = {
        {"finite", INV_FINITE, 0},          {"nondecreasing", INV_MONOTONE, OP_GE}, {"increasing", INV_MONOTONE, OP_GT},
        {"nonincreasing", INV_MONOTONE, OP_LE}, {"decreasing", INV_MONOTONE, OP_LT},
    };
    trim_copy(inv->lhs, sizeof inv->lhs, text, colon);
    char word[256];
    trim_copy(word, sizeof word, colon + 1, colon + strlen(colon));
    if (!inv->lhs[0]) return snprintf(err, n, "no tensor name before ':'"), -1;
    for (size_t k = 0; k < sizeof words / sizeof *words; k++)
        if (strcmp(word, words[k].word) == 0) {
            inv->kind = words[k].kind;
            inv->op = words[k].op;
            return 0;
        }
    if (strncmp(word, "shape=", 6) == 0) {
        inv->kind = INV_SHAPE;
        if (parse_shape(word + 6, inv)) return snprintf(err, n, "bad shape '%s' (want e.g. 1x*x2)", word + 6), -1;
        return 0;
    }
    snprintf(err, n, "unknown check '%s' (finite, nondecreasing, increasing, nonincreasing, decreasing, shape=...)", word);
    return -1;
}

int cmp_invariant_parse(const char *text, cmp_invariant *inv, char *err, size_t n) {
    memset(inv, 0, sizeof *inv);
    snprintf(inv->text, sizeof inv->text, "%s", text);
    cmp_invariant_reset(inv);
    /* the earliest operator; at one position the two-character one */
    const char *at = NULL;
    int op = -1;
    for (const char *p = text; *p && !at; p++)
        for (int k = 0; k < 6; k++) {
            size_t l = strlen(op_text[k]);
            if (strncmp(p, op_text[k], l) == 0 && (!at || l > strlen(op_text[op]))) at = p, op = k;
        }
    if (!at) {
        const char *colon = strrchr(text, ':');
        if (!colon) return snprintf(err, n, "expected NAME OP VALUE or NAME:CHECK"), -1;
        return parse_keyword(text, colon, inv, err, n);
    }
    inv->kind = INV_COMPARE;
    inv->op = op;
    trim_copy(inv->lhs, sizeof inv->lhs, text, at);
    const char *r = at + strlen(op_text[op]);
    trim_copy(inv->rhs, sizeof inv->rhs, r, r + strlen(r));
    if (!inv->lhs[0] || !inv->rhs[0]) return snprintf(err, n, "a name and a value are needed around '%s'", op_text[op]), -1;
    char *e;
    inv->value = strtod(inv->rhs, &e);
    inv->rhs_is_tensor = e == inv->rhs || *e;
    return 0;
}

void cmp_invariant_reset(cmp_invariant *inv) {
    for (int k = 0; k < 2; k++) inv->r[k] = (cmp_inv_state){.first_step = -1};
}

static bool holds(int op, double a, double b) {
    switch (op) {
    case OP_EQ: return a == b;
    case OP_NE: return a != b;
    case OP_LT: return a < b;
    case OP_LE: return a <= b;
    case OP_GT: return a > b;
    default: return a >= b;
    }
}

static const kiln_tensor_t *find(const cmp_tensors *a, const cmp_tensors *b, const char *name) {
    kiln_tensor_t *t = a ? cmp_tensors_find(a, name) : NULL;
    return t ? t : (b ? cmp_tensors_find(b, name) : NULL);
}

/* Counts elements of a failing `a OP b` (b broadcast when it has one element); bad says what the
 * first one saw. Returns -1 when the sizes do not fit. */
static int64_t count_failing(const kiln_tensor_t *a, const kiln_tensor_t *b, double value, int op, const char *lhs,
                             const char *rhs_what, char *bad, size_t n) {
    int64_t na = kiln_tensor_count(a), nb = b ? kiln_tensor_count(b) : 1, fails = 0;
    if (nb != 1 && nb != na) return -1;
    for (int64_t i = 0; i < na; i++) {
        double x = kiln_load_f64(a->dtype, a->data, i);
        double y = b ? kiln_load_f64(b->dtype, b->data, nb == 1 ? 0 : i) : value;
        if (holds(op, x, y)) continue;
        if (!fails++) snprintf(bad, n, "%.100s[%lld] = %.9g, want %s %.120s%.9g", lhs, (long long)i, x, op_text[op], rhs_what, y);
    }
    return fails;
}

void cmp_invariant_check(cmp_invariant *inv, int runner, int64_t step, const cmp_tensors *outs, const cmp_tensors *ins,
                         const cmp_tensors *prev) {
    cmp_inv_state *st = &inv->r[runner];
    const kiln_tensor_t *t = find(outs, ins, inv->lhs);
    if (!t || t->dtype == KILN_DTYPE_STRING) {
        st->missing = true;
        return;
    }
    st->checked++;
    char bad[700] = "";
    int64_t fails = 0, count = kiln_tensor_count(t);
    if (inv->kind == INV_COMPARE) {
        const kiln_tensor_t *rhs = NULL;
        char what[300] = "";
        if (inv->rhs_is_tensor) {
            rhs = find(outs, ins, inv->rhs);
            if (!rhs) {
                st->missing = true;
                st->checked--;
                return;
            }
            snprintf(what, sizeof what, "%s = ", inv->rhs);
        }
        fails = count_failing(t, rhs, inv->value, inv->op, inv->lhs, what, bad, sizeof bad);
        if (fails < 0) fails = count, snprintf(bad, sizeof bad, "%s has %lld elements, %s %lld", inv->lhs, (long long)count, inv->rhs,
                                               (long long)kiln_tensor_count(rhs));
    } else if (inv->kind == INV_FINITE) {
        for (int64_t i = 0; i < count; i++) {
            double x = kiln_load_f64(t->dtype, t->data, i);
            if (isfinite(x)) continue;
            if (!fails++) snprintf(bad, sizeof bad, "%s[%lld] = %g", inv->lhs, (long long)i, x);
        }
    } else if (inv->kind == INV_MONOTONE) {
        const kiln_tensor_t *p = prev ? cmp_tensors_find(prev, inv->lhs) : NULL;
        if (p) {
            fails = count_failing(t, p, 0, inv->op, inv->lhs, "the step before's ", bad, sizeof bad);
            if (fails < 0) fails = count, snprintf(bad, sizeof bad, "%s changed size from %lld to %lld elements", inv->lhs,
                                                   (long long)kiln_tensor_count(p), (long long)count);
        }
    } else {
        bool ok = t->rank == inv->rank;
        for (int k = 0; ok && k < t->rank; k++) ok = inv->dims[k] < 0 || inv->dims[k] == t->dims[k];
        if (!ok) {
            char got[128];
            fails = 1;
            snprintf(bad, sizeof bad, "%s has shape %s", inv->lhs, kiln_dims_str(t->rank, t->dims, got, sizeof got));
        }
    }
    if (!fails) return;
    st->violations++;
    if (st->first_step < 0) {
        st->first_step = step;
        if (inv->kind == INV_SHAPE) snprintf(st->first, sizeof st->first, "%.230s", bad);
        else snprintf(st->first, sizeof st->first, "%.200s (%lld of %lld elements)", bad, (long long)fails, (long long)count);
    }
}
