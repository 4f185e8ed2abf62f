/* norm_attention.cu — fused scaled-dot-product attention (ONNX Attention, opsets 23-25), one
 * launch: tiles of K and V go through shared memory, the softmax is computed online (running
 * max and sum per query row), the accumulators are FP32. Two kernels:
 *   attn_tc    F16/BF16 with head size E == Ev in {64, 128}: flash-attention-2 style, 4 warps
 *              of 16 query rows each, 64-key tiles loaded with cp.async (K of the next tile
 *              in flight during softmax and P.V), QK^T and P.V on tensor cores (mma.sync
 *              m16n8k16), P kept in registers between the two products.
 *   attn_simt  any float type, V head size up to 512: 4 warps of 4 (or 1) query rows sharing
 *              each K/V tile in shared memory, FP32 FMAs.
 * Both add the same bias (attn_mask, is_causal, window sizes, nonpad_kv_seqlen), skip key
 * tiles that are masked for the whole block, and write 0 for rows with no key left (the
 * reference's fully masked rows). Keys j < P come from past_key / past_value.
 * Also here: the present_key / present_value concatenation, RotaryEmbedding and SwiGLU. */
#include "norm_common.cuh"

namespace knorm {

#define KNORM_LOG2E 1.4426950408889634f

/* The additive bias of score (b, h, i, j), -inf where masked; off is the causal offset. */
__device__ __forceinline__ float attn_bias(const kiln_norm_attn_args &a, const void *mask, int64_t b, int64_t h,
                                           int64_t i, int64_t j, int64_t off, int64_t npad) {
    float bias = 0.0f;
    if (mask) {
        if (j >= a.m_len) return -INFINITY;
        int64_t at = b * a.m_sb + h * a.m_sh + i * a.m_ss + j;
        if (a.ct_mask == KILN_CT_BOOL) {
            if (!((const uint8_t *)mask)[at]) return -INFINITY;
        } else {
            bias = ld_ct(a.ct_mask, mask, at);
        }
    }
    if (a.causal && j > i + off) return -INFINITY;
    int64_t diff = i + off - j;
    if ((a.left_window >= 0 && diff > a.left_window) || (a.right_window >= 0 && -diff > a.right_window)) return -INFINITY;
    if (j >= npad) return -INFINITY;
    return bias;
}

/* The key range [j_lo, j_hi) that query rows [i_first, i_last] can see, and the causal offset. */
struct attn_range {
    int64_t off, npad, j_lo, j_hi;
};

__device__ __forceinline__ attn_range attn_keys(const kiln_norm_attn_args &a, const void *mask, const int64_t *nonpad,
                                                int64_t b, int64_t i_first, int64_t i_last) {
    attn_range r;
    r.npad = nonpad ? nonpad[b] : a.T;
    r.off = a.P > 0 ? a.P : nonpad ? r.npad - a.Sq : 0;
    r.j_hi = r.npad < a.T ? r.npad : a.T;
    if (mask && a.m_len < r.j_hi) r.j_hi = a.m_len;
    if (a.causal && i_last + r.off + 1 < r.j_hi) r.j_hi = i_last + r.off + 1;
    if (a.right_window >= 0 && i_last + r.off + a.right_window + 1 < r.j_hi) r.j_hi = i_last + r.off + a.right_window + 1;
    r.j_lo = 0;
    if (a.left_window >= 0 && i_first + r.off - a.left_window > 0) r.j_lo = i_first + r.off - a.left_window;
    return r;
}

__device__ __forceinline__ float attn_cap(float v, float softcap) {
    return softcap > 0.0f ? softcap * tanhf(v / softcap) : v;
}

/* Start of key (or value) row j of kv head g in batch b: past rows first. */
template <typename T>
__device__ __forceinline__ const T *kv_row(const T *cur, const T *past, int64_t sb, int64_t sh, int64_t ss, int64_t width,
                                           const kiln_norm_attn_args &a, int64_t b, int64_t g, int64_t j) {
    if (j < a.P) return past + ((b * a.Hkv + g) * a.P + j) * width;
    return cur + b * sb + g * sh + (j - a.P) * ss;
}

/* ================= SIMT kernel: RPW query rows per warp, 4 warps ================= */

template <typename T, int EPL, int RPW>
__global__ void __launch_bounds__(128) attn_simt(const T *__restrict__ q, const T *__restrict__ k,
                                                 const T *__restrict__ v, const T *__restrict__ pk,
                                                 const T *__restrict__ pv, const void *__restrict__ mask,
                                                 const int64_t *__restrict__ nonpad, T *__restrict__ y,
                                                 const kiln_norm_attn_args a, int tk) {
    extern __shared__ float sm[];
    const int NW = 4, BR = NW * RPW;
    const int E = (int)a.E, Ev = (int)a.Ev;
    float *Ks = sm;                 /* [tk][E + 1]: lane j reads key j without bank conflicts */
    float *Vs = Ks + tk * (E + 1);  /* [tk][Ev] */
    float *Qs = Vs + tk * Ev;       /* [BR][E], scaled */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t nqb = (a.Sq + BR - 1) / BR;
    for (int64_t blk = blockIdx.x; blk < a.B * a.Hq * nqb; blk += gridDim.x) {
        int64_t qb = blk % nqb, h = (blk / nqb) % a.Hq, b = blk / (nqb * a.Hq);
        int64_t g = h / (a.Hq / a.Hkv), i0 = qb * BR, iw = i0 + warp * RPW;
        int64_t i_last = (i0 + BR < a.Sq ? i0 + BR : a.Sq) - 1;
        attn_range kr = attn_keys(a, mask, nonpad, b, i0, i_last);
        for (int r = 0; r < RPW; r++) {
            bool ok = iw + r < a.Sq;
            const T *qr = q + b * a.q_sb + h * a.q_sh + (ok ? iw + r : 0) * a.q_ss;
            for (int e = lane; e < E; e += 32) Qs[(warp * RPW + r) * E + e] = ok ? to_f(qr[e]) * a.scale : 0.0f;
        }
        float m[RPW], l[RPW], acc[RPW][EPL];
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            m[r] = -INFINITY;
            l[r] = 0.0f;
#pragma unroll
            for (int c = 0; c < EPL; c++) acc[r][c] = 0.0f;
        }
        for (int64_t j0 = kr.j_lo; j0 < kr.j_hi; j0 += tk) {
            int n = kr.j_hi - j0 < tk ? (int)(kr.j_hi - j0) : tk;
            __syncthreads(); /* the previous tile is consumed (and Qs written) */
            for (int idx = threadIdx.x; idx < n * E; idx += blockDim.x) {
                int r = idx / E, e = idx % E;
                Ks[r * (E + 1) + e] = to_f(kv_row(k, pk, a.k_sb, a.k_sh, a.k_ss, a.E, a, b, g, j0 + r)[e]);
            }
            for (int idx = threadIdx.x; idx < n * Ev; idx += blockDim.x) {
                int r = idx / Ev, e = idx % Ev;
                Vs[r * Ev + e] = to_f(kv_row(v, pv, a.v_sb, a.v_sh, a.v_ss, a.Ev, a, b, g, j0 + r)[e]);
            }
            __syncthreads();
            float dot[RPW];
#pragma unroll
            for (int r = 0; r < RPW; r++) dot[r] = 0.0f;
            if (lane < n) {
                const float *ks = Ks + lane * (E + 1), *qs = Qs + warp * RPW * E;
                for (int e = 0; e < E; e++) {
                    float kv = ks[e];
#pragma unroll
                    for (int r = 0; r < RPW; r++) dot[r] += qs[r * E + e] * kv;
                }
            }
            float p[RPW];
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                int64_t i = iw + r;
                float sc = -INFINITY;
                if (i < a.Sq && lane < n) sc = attn_cap(dot[r], a.softcap) + attn_bias(a, mask, b, h, i, j0 + lane, kr.off, kr.npad);
                float m_new = fmaxf(m[r], warp_max(sc));
                float m_use = m_new == -INFINITY ? 0.0f : m_new;
                p[r] = sc == -INFINITY ? 0.0f : expf(sc - m_use);
                float corr = expf(m[r] - m_use);
                l[r] = l[r] * corr + warp_sum(p[r]);
                m[r] = m_new;
#pragma unroll
                for (int c = 0; c < EPL; c++) acc[r][c] *= corr;
            }
            for (int jj = 0; jj < n; jj++) {
                float pj[RPW];
#pragma unroll
                for (int r = 0; r < RPW; r++) pj[r] = __shfl_sync(0xffffffffu, p[r], jj);
#pragma unroll
                for (int c = 0; c < EPL; c++) {
                    int e = lane + 32 * c;
                    if (e < Ev) {
                        float vv = Vs[jj * Ev + e];
#pragma unroll
                        for (int r = 0; r < RPW; r++) acc[r][c] += pj[r] * vv;
                    }
                }
            }
        }
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            int64_t i = iw + r;
            if (i >= a.Sq) continue;
            T *yr = y + b * a.y_sb + h * a.y_sh + i * a.y_ss;
            float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
            for (int c = 0; c < EPL; c++) {
                int e = lane + 32 * c;
                if (e < Ev) yr[e] = from_f<T>(acc[r][c] * inv);
            }
        }
        __syncthreads(); /* Qs and the tiles are reused by the next block index */
    }
}

/* ================= tensor-core kernel (F16 / BF16, E == Ev == HD) ================= */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* d += a (16x16, row) * b (16x8, col), FP32 accumulators. */
template <typename T> __device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__half>(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as one register of two 16-bit values, lo in the low half. */
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* Tiles in shared memory are [64 rows][HD] with the 16-byte chunks of row r XOR-swizzled by
 * r % 8, so that ldmatrix reads of 8 rows at one column hit 8 different bank groups. */
template <int HD> __device__ __forceinline__ int swz(int r, int col) {
    return r * HD + ((((col >> 3) ^ (r & 7))) << 3) + (col & 7);
}

template <typename T, int HD, int NW>
__global__ void __launch_bounds__(NW * 32) attn_tc(const T *__restrict__ q, const T *__restrict__ k,
                                               const T *__restrict__ v, const T *__restrict__ pk,
                                               const T *__restrict__ pv, const void *__restrict__ mask,
                                               const int64_t *__restrict__ nonpad, T *__restrict__ y,
                                               const kiln_norm_attn_args a) {
    constexpr int BR = 16 * NW, BC = 64, NCH = HD / 8, KS = HD / 16, NT = BC / 8, ND = HD / 8, NTH = NW * 32;
    __shared__ __align__(128) uint16_t ks_raw[(BR > BC ? BR : BC) * HD]; /* also stages Q */
    __shared__ __align__(128) uint16_t vs_raw[BC * HD];
    T *Ks = reinterpret_cast<T *>(ks_raw), *Vs = reinterpret_cast<T *>(vs_raw);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g4 = lane >> 2, t4 = lane & 3;
    const int64_t nqb = (a.Sq + BR - 1) / BR;
    const int64_t blk = blockIdx.x;
    /* the last query blocks first: with is_causal they have the most keys to visit */
    const int64_t qb = nqb - 1 - blk % nqb, h = (blk / nqb) % a.Hq, b = blk / (nqb * a.Hq);
    const int64_t gk = h / (a.Hq / a.Hkv), i0 = qb * BR;
    const int64_t i_last = (i0 + BR < a.Sq ? i0 + BR : a.Sq) - 1;
    const attn_range kr = attn_keys(a, mask, nonpad, b, i0, i_last);

    /* Q tile -> Ks (as staging), then into registers as A fragments */
    for (int c = tid; c < BR * NCH; c += NTH) {
        int r = c / NCH, ch = c % NCH;
        int64_t i = i0 + r;
        const T *src = q + b * a.q_sb + h * a.q_sh + (i < a.Sq ? i : 0) * a.q_ss + ch * 8;
        cp_async16(smem_u32(Ks + swz<HD>(r, ch * 8)), src, i < a.Sq ? 16 : 0);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = ks * 16 + (lane >> 4) * 8;
        ldsm_x4(qf[ks], smem_u32(Ks + swz<HD>(r, col)));
    }
    __syncthreads();

    /* Issues the cp.async loads of the 64 rows of K (or V) from key j0; rows past j_hi are zeros. */
    auto load_tile = [&](T *dst, const T *cur, const T *past, int64_t sb, int64_t sh, int64_t ss, int64_t j0) {
        for (int c = tid; c < BC * NCH; c += NTH) {
            int r = c / NCH, ch = c % NCH;
            int64_t j = j0 + r;
            bool live = j < kr.j_hi;
            const T *src = live ? kv_row(cur, past, sb, sh, ss, HD, a, b, gk, j) + ch * 8 : cur;
            cp_async16(smem_u32(dst + swz<HD>(r, ch * 8)), src, live ? 16 : 0);
        }
        cp_async_commit();
    };

    float o[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const bool plain_kind = !mask && !nonpad && a.softcap == 0.0f && a.left_window < 0 && a.right_window < 0;
    const int64_t row0 = i0 + warp * 16; /* this warp's first query row */

    if (kr.j_lo < kr.j_hi) {
        load_tile(Ks, k, pk, a.k_sb, a.k_sh, a.k_ss, kr.j_lo);
        load_tile(Vs, v, pv, a.v_sb, a.v_sh, a.v_ss, kr.j_lo);
    }
    for (int64_t j0 = kr.j_lo; j0 < kr.j_hi; j0 += BC) {
        const bool more = j0 + BC < kr.j_hi;
        cp_async_wait<1>(); /* K of this tile is in */
        __syncthreads();

        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t bk[4];
                int r = np * 16 + (lane & 7) + (lane >> 4) * 8, col = ks * 16 + ((lane >> 3) & 1) * 8;
                ldsm_x4(bk, smem_u32(Ks + swz<HD>(r, col)));
                mma16816<T>(s[2 * np], qf[ks], bk[0], bk[1]);
                mma16816<T>(s[2 * np + 1], qf[ks], bk[2], bk[3]);
            }
        }
        __syncthreads(); /* every warp is done with Ks */
        if (more) load_tile(Ks, k, pk, a.k_sb, a.k_sh, a.k_ss, j0 + BC);

        /* scores in log2 units; the bias only where some element of the tile may need it */
        const bool plain = plain_kind && j0 + BC <= kr.j_hi && (!a.causal || j0 + BC - 1 <= row0 + kr.off) &&
                           row0 + 15 < a.Sq;
        if (plain) {
            const float sl2 = a.scale * KNORM_LOG2E;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) s[nt][c] *= sl2;
        } else {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int64_t j = j0 + nt * 8 + 2 * t4 + (c & 1), i = row0 + g4 + (c >> 1) * 8;
                    float x = -INFINITY;
                    if (j < kr.j_hi && i < a.Sq)
                        x = attn_cap(s[nt][c] * a.scale, a.softcap) + attn_bias(a, mask, b, h, i, j, kr.off, kr.npad);
                    s[nt][c] = x * KNORM_LOG2E;
                }
        }

        /* online softmax: rows g4 (c = 0, 1) and g4 + 8 (c = 2, 3), each shared by 4 lanes */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float m_new = fmaxf(m[r], mx);
            float m_use = m_new == -INFINITY ? 0.0f : m_new;
            float corr = exp2f(m[r] - m_use);
            m[r] = m_new;
            l[r] *= corr;
#pragma unroll
            for (int nd = 0; nd < ND; nd++) {
                o[nd][2 * r] *= corr;
                o[nd][2 * r + 1] *= corr;
            }
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                float p0 = exp2f(s[nt][2 * r] - m_use), p1 = exp2f(s[nt][2 * r + 1] - m_use);
                s[nt][2 * r] = p0;
                s[nt][2 * r + 1] = p1;
                l[r] += p0 + p1;
            }
        }

        if (more) cp_async_wait<1>(); /* V of this tile is in (K of the next may still fly) */
        else cp_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t pa[4];
            pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int np = 0; np < ND / 2; np++) {
                uint32_t bv[4];
                int r = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), col = np * 16 + (lane >> 4) * 8;
                ldsm_x4_t(bv, smem_u32(Vs + swz<HD>(r, col)));
                mma16816<T>(o[2 * np], pa, bv[0], bv[1]);
                mma16816<T>(o[2 * np + 1], pa, bv[2], bv[3]);
            }
        }
        __syncthreads(); /* every warp is done with Vs */
        if (more) load_tile(Vs, v, pv, a.v_sb, a.v_sh, a.v_ss, j0 + BC);
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        int64_t i = row0 + g4 + r * 8;
        if (i >= a.Sq) continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        T *yr = y + b * a.y_sb + h * a.y_sh + i * a.y_ss;
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
            *reinterpret_cast<uint32_t *>(yr + nd * 8 + 2 * t4) = pack2<T>(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
    }
}

/* ================= present_key / present_value ================= */

template <typename T>
__global__ void kv_concat(const T *__restrict__ past, const T *__restrict__ cur, T *__restrict__ out, int64_t B,
                          int64_t H, int64_t P, int64_t S, int64_t W, int64_t c_sb, int64_t c_sh, int64_t c_ss) {
    int64_t Tt = P + S, n = B * H * Tt * W;
    for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (int64_t)gridDim.x * blockDim.x) {
        int64_t w = x % W, j = (x / W) % Tt, g = (x / (W * Tt)) % H, b = x / (W * Tt * H);
        out[x] = j < P ? past[((b * H + g) * P + j) * W + w] : cur[b * c_sb + g * c_sh + (j - P) * c_ss + w];
    }
}

/* ================= RotaryEmbedding ================= */

template <typename T>
__global__ void rotary(const T *__restrict__ x, const T *__restrict__ cs, const T *__restrict__ sn,
                       const int64_t *__restrict__ pos, T *__restrict__ y, const kiln_norm_rotary_args a) {
    int64_t n = a.B * a.S * a.H * a.D, half = a.R / 2;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = t % a.D, h = (t / a.D) % a.H, s = (t / (a.D * a.H)) % a.S, b = t / (a.D * a.H * a.S);
        int64_t base = b * a.sb + h * a.sh + s * a.ss;
        if (d >= a.R) {
            y[base + d] = x[base + d];
            continue;
        }
        int64_t i = a.interleaved ? d / 2 : d % half;
        bool first = a.interleaved ? (d % 2 == 0) : d < half;
        int64_t i1 = a.interleaved ? 2 * i : i, i2 = a.interleaved ? 2 * i + 1 : i + half;
        int64_t row = pos ? pos[b * a.S + s] : b * a.S + s;
        float out;
        if (row < 0 || row >= a.max_pos) {
            out = NAN;
        } else {
            float c = to_f(cs[row * half + i]), sv = to_f(sn[row * half + i]);
            float x1 = to_f(x[base + i1]), x2 = to_f(x[base + i2]);
            out = first ? c * x1 - sv * x2 : sv * x1 + c * x2;
        }
        y[base + d] = from_f<T>(out);
    }
}

/* ================= SwiGLU ================= */

template <typename T>
__global__ void swiglu(const T *__restrict__ a, const T *__restrict__ b, T *__restrict__ y, int64_t n, float alpha) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float x = to_f(a[i]);
        y[i] = from_f<T>(x / (1.0f + expf(-alpha * x)) * to_f(b[i]));
    }
}

/* The SIMT kernel's key tile: the most keys (32, 16 or 8) whose K and V rows, with the
 * block's rpw * 4 query rows, fit in 48 KB; 0 if none. */
static int simt_tile(int64_t E, int64_t Ev, int rpw, size_t *smem) {
    for (int tk = 32; tk >= 8; tk /= 2) {
        size_t bytes = ((size_t)tk * (size_t)(E + 1 + Ev) + 4 * (size_t)rpw * (size_t)E) * sizeof(float);
        if (bytes <= 48 * 1024) {
            *smem = bytes;
            return tk;
        }
    }
    return 0;
}

template <typename T, int RPW>
static void launch_simt_rpw(const T *q, const T *k, const T *v, const T *pk, const T *pv, const void *mask,
                            const int64_t *nonpad, T *y, const kiln_norm_attn_args &a, int tk, size_t smem,
                            cudaStream_t st) {
    unsigned grid = grid_for(a.B * a.Hq * ((a.Sq + 4 * RPW - 1) / (4 * RPW)), 1);
    int epl = (int)((a.Ev + 31) / 32);
    if (epl <= 1) attn_simt<T, 1, RPW><<<grid, 128, smem, st>>>(q, k, v, pk, pv, mask, nonpad, y, a, tk);
    else if (epl <= 2) attn_simt<T, 2, RPW><<<grid, 128, smem, st>>>(q, k, v, pk, pv, mask, nonpad, y, a, tk);
    else if (epl <= 4) attn_simt<T, 4, RPW><<<grid, 128, smem, st>>>(q, k, v, pk, pv, mask, nonpad, y, a, tk);
    else if (epl <= 8) attn_simt<T, 8, RPW><<<grid, 128, smem, st>>>(q, k, v, pk, pv, mask, nonpad, y, a, tk);
    else attn_simt<T, 16, RPW><<<grid, 128, smem, st>>>(q, k, v, pk, pv, mask, nonpad, y, a, tk);
}

template <typename T>
static cudaError_t launch_simt(const T *q, const T *k, const T *v, const T *pk, const T *pv, const void *mask,
                               const int64_t *nonpad, T *y, const kiln_norm_attn_args &a, cudaStream_t st) {
    if (a.Ev > 512) return cudaErrorInvalidValue;
    size_t smem = 0;
    /* 4 query rows per warp share each K/V tile; one when only that fits (or Sq is tiny) */
    int tk = a.Sq > 4 && a.Ev <= 256 ? simt_tile(a.E, a.Ev, 4, &smem) : 0;
    if (tk) {
        launch_simt_rpw<T, 4>(q, k, v, pk, pv, mask, nonpad, y, a, tk, smem, st);
    } else {
        tk = simt_tile(a.E, a.Ev, 1, &smem);
        if (tk == 0) return cudaErrorInvalidValue;
        launch_simt_rpw<T, 1>(q, k, v, pk, pv, mask, nonpad, y, a, tk, smem, st);
    }
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_tc(const T *q, const T *k, const T *v, const T *pk, const T *pv, const void *mask,
                             const int64_t *nonpad, T *y, const kiln_norm_attn_args &a, cudaStream_t st) {
    /* head size 128: 128 query rows (8 warps) per block halve the K/V traffic; head size 64
     * keeps 64-row blocks, which fit 3 to an SM (measured faster on H100) */
    bool wide = a.Sq > 64 && a.E == 128;
    int64_t rows = wide ? 128 : 64, blocks = a.B * a.Hq * ((a.Sq + rows - 1) / rows);
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    if (a.E == 64) {
        attn_tc<T, 64, 4><<<(unsigned)blocks, 128, 0, st>>>(q, k, v, pk, pv, mask, nonpad, y, a);
    } else {
        if (wide) attn_tc<T, 128, 8><<<(unsigned)blocks, 256, 0, st>>>(q, k, v, pk, pv, mask, nonpad, y, a);
        else attn_tc<T, 128, 4><<<(unsigned)blocks, 128, 0, st>>>(q, k, v, pk, pv, mask, nonpad, y, a);
    }
    return cudaGetLastError();
}

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

} /* namespace knorm */

using namespace knorm;

extern "C" int kiln_norm_attention_simt_fits(int64_t E, int64_t Ev) {
    size_t smem;
    return Ev <= 512 && simt_tile(E, Ev, 1, &smem) > 0;
}

extern "C" int kiln_norm_attention_tc_ok(int ct, const void *q, const void *k, const void *v, const void *past_k,
                                         const void *past_v, const void *y, const kiln_norm_attn_args *a) {
    if (ct != KILN_CT_F16 && ct != KILN_CT_BF16) return 0;
    if (a->E != a->Ev || (a->E != 64 && a->E != 128)) return 0;
    if (a->B * a->Hq * ((a->Sq + 63) / 64) > 0x7fffffff) return 0;
    if (!al16(q) || !al16(k) || !al16(v) || !al16(y) || (past_k && !al16(past_k)) || (past_v && !al16(past_v))) return 0;
    /* every row start 16-byte aligned: strides in multiples of 8 elements */
    int64_t st[] = {a->q_sb, a->q_sh, a->q_ss, a->k_sb, a->k_sh, a->k_ss,
                    a->v_sb, a->v_sh, a->v_ss, a->y_sb, a->y_sh, a->y_ss};
    for (int i = 0; i < 12; i++)
        if (st[i] % 8) return 0;
    return 1;
}

extern "C" cudaError_t kiln_norm_attention(int ct, const void *q, const void *k, const void *v, const void *past_k,
                                           const void *past_v, const void *mask, const int64_t *nonpad, void *y,
                                           const kiln_norm_attn_args *a, int tactic, cudaStream_t stream) {
    if (a->B * a->Hq * a->Sq == 0 || a->Ev == 0) return cudaSuccess;
    if (tactic < 0) tactic = kiln_norm_attention_tc_ok(ct, q, k, v, past_k, past_v, y, a) ? 1 : 0;
    if (tactic == 1) {
        if (!kiln_norm_attention_tc_ok(ct, q, k, v, past_k, past_v, y, a)) return cudaErrorInvalidValue;
        if (ct == KILN_CT_F16)
            return launch_tc((const __half *)q, (const __half *)k, (const __half *)v, (const __half *)past_k,
                             (const __half *)past_v, mask, nonpad, (__half *)y, *a, stream);
        return launch_tc((const __nv_bfloat16 *)q, (const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v,
                         (const __nv_bfloat16 *)past_k, (const __nv_bfloat16 *)past_v, mask, nonpad,
                         (__nv_bfloat16 *)y, *a, stream);
    }
    cudaError_t err = cudaErrorInvalidValue;
    KNORM_FLOAT_SWITCH(ct, T, {
        err = launch_simt((const T *)q, (const T *)k, (const T *)v, (const T *)past_k, (const T *)past_v, mask, nonpad,
                          (T *)y, *a, stream);
    });
    return err;
}

extern "C" cudaError_t kiln_norm_kv_concat(int ct, const void *past, const void *cur, void *present, int64_t B,
                                           int64_t H, int64_t P, int64_t S, int64_t W, int64_t c_sb, int64_t c_sh,
                                           int64_t c_ss, cudaStream_t stream) {
    int64_t n = B * H * (P + S) * W;
    if (n == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        kv_concat<T><<<grid_for(n, 256 * 4), 256, 0, stream>>>((const T *)past, (const T *)cur, (T *)present, B, H, P,
                                                               S, W, c_sb, c_sh, c_ss);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_rotary(int ct, const void *x, const void *cos_cache, const void *sin_cache,
                                        const int64_t *pos, void *y, const kiln_norm_rotary_args *a,
                                        cudaStream_t stream) {
    int64_t n = a->B * a->S * a->H * a->D;
    if (n == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        rotary<T><<<grid_for(n, 256 * 4), 256, 0, stream>>>((const T *)x, (const T *)cos_cache, (const T *)sin_cache, pos,
                                                            (T *)y, *a);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_swiglu(int ct, const void *a, const void *b, void *y, int64_t n, float alpha,
                                        cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        swiglu<T><<<grid_for(n, 256 * 4), 256, 0, stream>>>((const T *)a, (const T *)b, (T *)y, n, alpha);
    });
    return cudaGetLastError();
}
