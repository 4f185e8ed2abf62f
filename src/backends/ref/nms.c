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

/* The selected boxes of one batch and class, as columns padded to whole blocks of NMS_BLOCK
 * with empty boxes, so that testing a candidate against all of them is a fixed-length,
 * branch-free overlap test the compiler vectorizes, the exact IoU computed only where boxes
 * overlap (Faster R-CNN's region proposals: ~3,000 candidates, ~2,000 selected, most pairs
 * apart; 30 ms one IoU at a time). */
#define NMS_BLOCK 64
typedef struct nms_kept {
    float *x0, *y0, *x1, *y1;
    int64_t n;
} nms_kept;

static float box_area(const nms_box *b) { return (b->xmax - b->xmin) * (b->ymax - b->ymin); }

/* The scalar definition: IoU(a, b) > iou_threshold, intersection and union in float; boxes with
 * zero area or no overlap never suppress. */
static bool suppresses(const nms_box *a, const nms_box *b, float iou_threshold) {
    float ixmin = fmaxf(a->xmin, b->xmin), ixmax = fminf(a->xmax, b->xmax);
    if (ixmax <= ixmin) return false;
    float iymin = fmaxf(a->ymin, b->ymin), iymax = fminf(a->ymax, b->ymax);
    if (iymax <= iymin) return false;
    float inter = (ixmax - ixmin) * (iymax - iymin);
    float area_a = box_area(a), area_b = box_area(b);
    float uni = area_a + area_b - inter;
    if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
    return inter / uni > iou_threshold;
}

static void kept_put(nms_kept *k, const nms_box *b) {
    int64_t q = k->n++;
    k->x0[q] = b->xmin;
    k->y0[q] = b->ymin;
    k->x1[q] = b->xmax;
    k->y1[q] = b->ymax;
    if (q % NMS_BLOCK == 0) /* a new block: the rest of it empty (x0 > x1 overlaps nothing) */
        for (int64_t r = q + 1; r < q + NMS_BLOCK; r++) k->x0[r] = k->y0[r] = 1.0f, k->x1[r] = k->y1[r] = 0.0f;
}

/* Whether a selected box suppresses b. The block test only finds overlaps (comparisons written
 * so that they vectorize; a NaN coordinate overlaps nothing); suppresses decides each. */
static bool suppressed(const nms_kept *k, const nms_box *b, float iou_threshold) {
    for (int64_t q0 = 0; q0 < k->n; q0 += NMS_BLOCK) {
        const float *x0 = k->x0 + q0, *y0 = k->y0 + q0, *x1 = k->x1 + q0, *y1 = k->y1 + q0;
        int any = 0;
        for (int q = 0; q < NMS_BLOCK; q++) {
            float ixmin = x0[q] > b->xmin ? x0[q] : b->xmin, ixmax = x1[q] < b->xmax ? x1[q] : b->xmax;
            float iymin = y0[q] > b->ymin ? y0[q] : b->ymin, iymax = y1[q] < b->ymax ? y1[q] : b->ymax;
            any |= (ixmax > ixmin) & (iymax > iymin);
        }
        if (!any) continue;
        for (int q = 0; q < NMS_BLOCK && q0 + q < k->n; q++) {
            nms_box s = {x0[q], y0[q], x1[q], y1[q]};
            if (suppresses(b, &s, iou_threshold)) return true;
        }
    }
    return false;
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
    size_t nb = (n + NMS_BLOCK - 1) / NMS_BLOCK * NMS_BLOCK;
    float *cols = kiln_malloc(4 * nb * sizeof *cols);
    nms_kept kept = {cols, cols + nb, cols + 2 * nb, cols + 3 * nb, 0};
    kiln_status s = KILN_STATUS_OK;
    if (!bx || !sc || !cand || !tmp || !result || !cols) {
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
            kept.n = 0;
            for (int64_t k = 0; k < n_cand && kept.n < max_out; k++) {
                const nms_box *x = &bx[cand[k]];
                if (suppressed(&kept, x, iou_threshold)) continue;
                kept_put(&kept, x);
                result[n_sel * 3 + 0] = b;
                result[n_sel * 3 + 1] = c;
                result[n_sel * 3 + 2] = cand[k];
                n_sel++;
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
    free(cols);
    return s;
}
