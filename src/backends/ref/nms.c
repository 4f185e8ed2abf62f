/* nms.c — reference kernel of NonMaxSuppression (parse and infer in src/ops/nms.c). For each
 * batch and class: keep the boxes whose score is above score_threshold (when given), visit
 * them by decreasing score (equal scores: lower box index first; a stable merge sort) and select a box unless its
 * IoU with an already selected box of that class is greater than iou_threshold; stop after
 * max_output_boxes_per_class. Boxes with zero area or no overlap never suppress. IoU is
 * computed in float, like onnx's reference and ONNX Runtime, so threshold ties agree.
 * Tested by the node tests test_nonmaxsuppression_*. */
#include "../../ops/reduce_internal.h"

typedef struct nms_box {
    float xmin, ymin, xmax, ymax;
} nms_box;

static nms_box load_box(const kiln_tensor *boxes, int64_t at, bool center) {
    float v[4];
    for (int i = 0; i < 4; i++) v[i] = (float)kiln_load_f64(boxes->dtype, boxes->data, at + i);
    nms_box b;
    if (center) {
        b.xmin = v[0] - v[2] / 2;
        b.xmax = v[0] + v[2] / 2;
        b.ymin = v[1] - v[3] / 2;
        b.ymax = v[1] + v[3] / 2;
    } else {
        b.ymin = fminf(v[0], v[2]);
        b.ymax = fmaxf(v[0], v[2]);
        b.xmin = fminf(v[1], v[3]);
        b.xmax = fmaxf(v[1], v[3]);
    }
    return b;
}

static bool suppresses(const nms_box *a, const nms_box *b, float iou_threshold) {
    float ixmin = fmaxf(a->xmin, b->xmin), ixmax = fminf(a->xmax, b->xmax);
    if (ixmax <= ixmin) return false;
    float iymin = fmaxf(a->ymin, b->ymin), iymax = fminf(a->ymax, b->ymax);
    if (iymax <= iymin) return false;
    float inter = (ixmax - ixmin) * (iymax - iymin);
    float area_a = (a->xmax - a->xmin) * (a->ymax - a->ymin);
    float area_b = (b->xmax - b->xmin) * (b->ymax - b->ymin);
    float uni = area_a + area_b - inter;
    if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
    return inter / uni > iou_threshold;
}

/* Stable merge sort of candidate box indices by decreasing score, so equal scores keep the
 * lower index first. tmp has n entries. */
static void sort_candidates(int64_t *idx, int64_t *tmp, int64_t n, const float *score) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = score[idx[j]] > score[idx[i]] ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, sizeof(int64_t) * (size_t)n);
    }
}

kiln_status kiln_ref_nms(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_nms_params *p = node->params;
    const kiln_tensor *boxes = in[0], *scores = in[1];
    int64_t B = boxes->dims[0], N = boxes->dims[1], C = scores->dims[1];
    int64_t max_out = 0;
    float iou_threshold = 0.0f, score_threshold = 0.0f;
    bool has_score_threshold = false;
    if (red_has_input(node, in, 2) && kiln_shape_count(in[2]->rank, in[2]->dims) == 1)
        max_out = kiln_load_i64(in[2]->dtype, in[2]->data, 0);
    if (red_has_input(node, in, 3) && kiln_shape_count(in[3]->rank, in[3]->dims) == 1)
        iou_threshold = (float)kiln_load_f64(in[3]->dtype, in[3]->data, 0);
    if (red_has_input(node, in, 4) && kiln_shape_count(in[4]->rank, in[4]->dims) == 1) {
        score_threshold = (float)kiln_load_f64(in[4]->dtype, in[4]->data, 0);
        has_score_threshold = true;
    }
    if (max_out < 0) max_out = 0;
    if (max_out > N) max_out = N;

    /* Scratch per batch and class: N boxes, N scores, N candidate indices. The result holds at
     * most B * C * max_out triples (B, C, N come from allocated tensors: no overflow). */
    int64_t max_sel = B * C * max_out;
    size_t result_bytes;
    KILN_TRY(kiln_checked_bytes(max_sel ? max_sel * 3 : 1, sizeof(int64_t), &result_bytes));
    size_t n = (size_t)(N ? N : 1);
    nms_box *bx = kiln_malloc(n * sizeof *bx);
    float *sc = kiln_malloc(n * sizeof *sc);
    int64_t *cand = kiln_malloc(n * sizeof *cand);
    int64_t *tmp = kiln_malloc(n * sizeof *tmp);
    int64_t *result = kiln_malloc(result_bytes);
    kiln_status s = KILN_STATUS_OK;
    if (!bx || !sc || !cand || !tmp || !result) {
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    int64_t n_sel = 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < N; i++) bx[i] = load_box(boxes, (b * N + i) * 4, p->center_point_box);
        for (int64_t c = 0; c < C; c++) {
            int64_t n_cand = 0;
            for (int64_t i = 0; i < N; i++) {
                sc[i] = (float)kiln_load_f64(scores->dtype, scores->data, (b * C + c) * N + i);
                if (!has_score_threshold || sc[i] > score_threshold) cand[n_cand++] = i;
            }
            sort_candidates(cand, tmp, n_cand, sc);
            int64_t first = n_sel, kept = 0;
            for (int64_t k = 0; k < n_cand && kept < max_out; k++) {
                bool keep = true;
                for (int64_t q = first; q < n_sel && keep; q++)
                    if (suppresses(&bx[cand[k]], &bx[result[q * 3 + 2]], iou_threshold)) keep = false;
                if (!keep) continue;
                result[n_sel * 3 + 0] = b;
                result[n_sel * 3 + 1] = c;
                result[n_sel * 3 + 2] = cand[k];
                n_sel++;
                kept++;
            }
        }
    }
    int64_t dims[2] = {n_sel, 3};
    s = kiln_tensor_alloc(&out[0], KILN_DTYPE_I64, 2, dims);
    if (s == KILN_STATUS_OK && n_sel) memcpy(out[0].data, result, sizeof(int64_t) * (size_t)(n_sel * 3));
done:
    free(bx);
    free(sc);
    free(cand);
    free(tmp);
    free(result);
    return s;
}
