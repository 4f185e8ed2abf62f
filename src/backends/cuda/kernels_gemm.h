/* kernels_gemm.h — launchers of the gemm family's own kernels (gemm_kernels.cu): what cuBLASLt
 * and cuDNN do not do for MatMul/Gemm/FusedMatMul, Conv/ConvTranspose and the integer products.
 *   - float epilogue help: bias along the last axis, Gemm's C broadcast (scaled) into a matrix;
 *   - a zero-filling window copy (Conv's asymmetric pads, ConvTranspose's crop);
 *   - integer MatMul/Gemm (int32/int64/uint32/uint64, wrap-around) as a plain kernel;
 *   - INT8: packing int8/uint8 operands into int8 (uint8 shifted by -128) padded for cuBLASLt's
 *     IMMA kernels, row sums, im2col, a fallback int8 GEMM, and the zero-point correction and
 *     requantization epilogues of MatMulInteger/QLinearMatMul and ConvInteger/QLinearConv.
 * POD arguments only (see kernels.h). Element types are KILN_CT_* codes. */
#ifndef KILN_CUDA_KERNELS_GEMM_H
#define KILN_CUDA_KERNELS_GEMM_H

#include "kernels.h"

/* y (rows, cols) += bias (cols), in place; ct F32/F16/BF16/F64. */
KILN_CUDA_EXTERN cudaError_t kiln_gemm_bias_last(void *y, const void *bias, int ct, int64_t rows, int64_t cols,
                                                 cudaStream_t s);

/* y (outer, channels, plane) += bias[channel], then max(., 0) when relu; in place, float ct. */
KILN_CUDA_EXTERN cudaError_t kiln_gemm_bias_channel(void *y, const void *bias, int ct, int64_t outer, int64_t channels,
                                                    int64_t plane, int relu, cudaStream_t s);

/* dst (rows, cols) = scale * c[i * c_row + j * c_col] (c broadcast by zero strides), or 0 when
 * c is NULL; dst and c of float type ct. */
KILN_CUDA_EXTERN cudaError_t kiln_gemm_fill_c(void *dst, const void *c, int ct, int64_t rows, int64_t cols,
                                              int64_t c_row, int64_t c_col, double scale, cudaStream_t s);

/* A window of (outer, d0, d1, d2) planes: dst[o][i] = src[o][i - off] where that lies inside
 * src's (s0, s1, s2), else 0 (all bits zero). Element size 1, 2, 4 or 8 bytes. */
typedef struct kiln_gemm_window {
    int64_t outer;
    int64_t dst[3], src[3], off[3];
} kiln_gemm_window;
KILN_CUDA_EXTERN cudaError_t kiln_gemm_window_copy(void *dst, const void *src, int elem_bytes, kiln_gemm_window w,
                                                   cudaStream_t s);

/* dst (batch, cols, rows) = transpose of src (batch, rows, cols) for 2- or 4-byte elements:
 * NCHW <-> NHWC (rows C, cols H*W) and weights (M, C, k) -> (M, k, C). */
KILN_CUDA_EXTERN cudaError_t kiln_gemm_transpose(void *dst, const void *src, int elem_bytes, int64_t batch,
                                                 int64_t rows, int64_t cols, cudaStream_t s);

/* Integer matrix products, exact with wrap-around (uint64 arithmetic, stored in the output
 * type): y[b][m][n] = sum_k A(b, m, k) * B(b, k, n) (+ C(m, n)), for ct I32/I64/U32/U64.
 * A(b, m, k) = a[a_off(b) + m * a_m + k * a_k] where a_off sums batch index * a_b over the
 * batch dims; likewise B; C (may be NULL) is read at m * c_m + n * c_n. y is contiguous. */
typedef struct kiln_gemm_int_geom {
    int nb;
    int64_t batch[KILN_CUDA_MAX_RANK];
    int64_t a_b[KILN_CUDA_MAX_RANK], b_b[KILN_CUDA_MAX_RANK];
    int64_t m, n, k;
    int64_t a_m, a_k, b_k, b_n, c_m, c_n;
} kiln_gemm_int_geom;
KILN_CUDA_EXTERN cudaError_t kiln_gemm_int(void *y, const void *a, const void *b, const void *c, int ct,
                                           kiln_gemm_int_geom g, cudaStream_t s);

/* ---- INT8 ---- */

/* dst (count, rows_pad, cols_pad) int8 = src (count, rows, cols) int8 or uint8 (is_u8: x - 128),
 * zeros in the padding. */
KILN_CUDA_EXTERN cudaError_t kiln_i8_pack(int8_t *dst, const void *src, int is_u8, int64_t count, int64_t rows,
                                          int64_t cols, int64_t rows_pad, int64_t cols_pad, cudaStream_t s);
/* dst (count, cols_pad, rows_pad) int8 = transpose of src (count, rows, cols), as kiln_i8_pack. */
KILN_CUDA_EXTERN cudaError_t kiln_i8_pack_t(int8_t *dst, const void *src, int is_u8, int64_t count, int64_t rows,
                                            int64_t cols, int64_t rows_pad, int64_t cols_pad, cudaStream_t s);
/* sums[r] = sum of the int8 row r (rows, cols) as int32. */
KILN_CUDA_EXTERN cudaError_t kiln_i8_row_sums(int32_t *sums, const int8_t *x, int64_t rows, int64_t cols,
                                              cudaStream_t s);

/* d[b] (rows, ldd) int32 = x[b] (rows, k) * y[b] (cols, k)^T over int8, for b < batch, with
 * element batch strides (0: shared); k a multiple of 4. The fallback where cuBLASLt has no
 * int8 kernel. */
KILN_CUDA_EXTERN cudaError_t kiln_i8_gemm_xyt(int32_t *d, const int8_t *x, const int8_t *y, int64_t batch,
                                              int64_t rows, int64_t cols, int64_t k, int64_t ldd, int64_t x_bs,
                                              int64_t y_bs, int64_t d_bs, cudaStream_t s);

/* A scale or zero point read on the device: p (NULL: absent, zero), its type, and its element
 * strides over the output's batch dims and its rows / columns (zeros where broadcast). */
typedef struct kiln_i8_param {
    const void *p;
    int ct;
    int64_t b[KILN_CUDA_MAX_RANK];
    int64_t m, n;
} kiln_i8_param;

/* MatMulInteger / QLinearMatMul epilogue over the output (batch..., M, N):
 *   acc = d - zb * rowsum(A row) - za * colsum(B column) + K * za * zb   (wrapping int32)
 * where za, zb are the zero points as seen by the shifted int8 operands (uint8: zp - 128);
 * then y = acc (int32) or, with qlinear, requantized exactly as the reference does. */
typedef struct kiln_i8_mm_epi {
    int nb;
    int64_t batch[KILN_CUDA_MAX_RANK];
    int64_t a_b[KILN_CUDA_MAX_RANK], b_b[KILN_CUDA_MAX_RANK]; /* operand matrix strides (in matrices) */
    int64_t m, n, k;
    /* d: element (b, m, n) at b * d_b + m * d_m + n (d_b given per output batch index) */
    int64_t d_b, d_m;
    /* rowsum index: a_mat * rs_mat + m; colsum index: b_mat * cs_mat + n */
    int64_t rs_mat, cs_mat;
    int a_u8, b_u8;
    int qlinear, scale_ct, y_ct; /* y_ct: I32 (MatMulInteger), I8 or U8 */
    kiln_i8_param za, zb, sa, sb, sy, zy;
} kiln_i8_mm_epi;
KILN_CUDA_EXTERN cudaError_t kiln_i8_mm_epilogue(void *y, const int32_t *d, const int32_t *rowsum,
                                                 const int32_t *colsum, kiln_i8_mm_epi e, cudaStream_t s);

/* The integer convolutions' geometry, lifted to 3 spatial dims. */
typedef struct kiln_i8_conv_geom {
    int64_t c, groups, cg, mg;  /* input channels, groups, channels per group, outputs per group */
    int64_t in[3], out[3], k[3], st[3], dl[3], pad[3];
    int64_t p, p_pad;           /* output positions per image, padded to cuBLASLt's multiple */
    int64_t kc, kc_pad;         /* cg * taps, padded */
} kiln_i8_conv_geom;

/* col (groups, nn, p_pad, kc_pad) int8 for the images n0 .. n0 + nn - 1 of x (N, C, in...):
 * x shifted like kiln_i8_pack; taps outside the input read the (shifted) zero point *xzp (NULL:
 * 0), so padding contributes zero once the zero point is subtracted; padding rows/cols are 0. */
KILN_CUDA_EXTERN cudaError_t kiln_i8_im2col(int8_t *col, const void *x, int x_u8, const void *xzp,
                                            kiln_i8_conv_geom g, int64_t n0, int64_t nn, cudaStream_t s);

/* ConvInteger / QLinearConv epilogue for the images n0 .. n0 + nn - 1:
 *   acc = d + bias[m] - wz[m] * rowsum(col row) - xz * colsum(w row) + kc * xz * wz[m]
 * d is (nn, groups, mg_pad, p_pad), rowsum (groups, nn, p_pad), colsum (groups, mg_pad); y is
 * (N, M, p) int32 (ConvInteger) or requantized int8/uint8 (QLinearConv: scales f32, x and y
 * per tensor, w per tensor or per output channel). */
typedef struct kiln_i8_conv_epi {
    int64_t n0, nn, mg_pad;
    int x_u8, w_u8, y_ct, qlinear;
    const void *xzp, *wzp; /* int8/uint8 as x / w */
    int64_t wz_count;       /* 1 or M */
    const int32_t *bias;    /* (M) or NULL */
    const float *xs, *ws, *ys;
    int64_t ws_count;
    const void *yzp;        /* y's dtype */
} kiln_i8_conv_epi;
KILN_CUDA_EXTERN cudaError_t kiln_i8_conv_epilogue(void *y, const int32_t *d, const int32_t *rowsum,
                                                   const int32_t *colsum, kiln_i8_conv_geom g, kiln_i8_conv_epi e,
                                                   cudaStream_t s);

#endif /* KILN_CUDA_KERNELS_GEMM_H */
