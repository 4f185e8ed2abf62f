/* dtype.c — dtype names and sizes, f16/bf16 conversions, and element load/store by dtype. */
#include "core.h"

#include <math.h>
#include <string.h>

const char *kiln_dtype_name(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F32: return "f32";
    case KILN_DTYPE_U8: return "uint8";
    case KILN_DTYPE_I8: return "int8";
    case KILN_DTYPE_U16: return "uint16";
    case KILN_DTYPE_I16: return "int16";
    case KILN_DTYPE_I32: return "int32";
    case KILN_DTYPE_I64: return "int64";
    case KILN_DTYPE_STRING: return "string";
    case KILN_DTYPE_BOOL: return "bool";
    case KILN_DTYPE_F16: return "f16";
    case KILN_DTYPE_F64: return "f64";
    case KILN_DTYPE_U32: return "uint32";
    case KILN_DTYPE_U64: return "uint64";
    case KILN_DTYPE_BF16: return "bf16";
    case KILN_DTYPE_UNDEFINED: break;
    }
    return "undefined";
}

size_t kiln_dtype_size(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F32: case KILN_DTYPE_I32: case KILN_DTYPE_U32: return 4;
    case KILN_DTYPE_U8: case KILN_DTYPE_I8: case KILN_DTYPE_BOOL: return 1;
    case KILN_DTYPE_U16: case KILN_DTYPE_I16: case KILN_DTYPE_F16: case KILN_DTYPE_BF16: return 2;
    case KILN_DTYPE_I64: case KILN_DTYPE_F64: case KILN_DTYPE_U64: return 8;
    case KILN_DTYPE_STRING: case KILN_DTYPE_UNDEFINED: break;
    }
    return 0;
}

bool kiln_dtype_is_float(kiln_dtype t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16 || t == KILN_DTYPE_F64;
}

bool kiln_dtype_is_int(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_U8: case KILN_DTYPE_I8: case KILN_DTYPE_U16: case KILN_DTYPE_I16:
    case KILN_DTYPE_I32: case KILN_DTYPE_I64: case KILN_DTYPE_U32: case KILN_DTYPE_U64: return true;
    default: return false;
    }
}

bool kiln_dtype_is_signed(kiln_dtype t) {
    return kiln_dtype_is_float(t) || t == KILN_DTYPE_I8 || t == KILN_DTYPE_I16 ||
           t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float kiln_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {                                                      /* zero / subnormal */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t kiln_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf or nan (keep a quiet nan) */
        return sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 | ((absu >> 13) & 0x3ff) : 0);
    if (absu >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (absu < 0x38800000u) {                      /* below the smallest normal half: subnormal */
        float a = bits_f32(absu);
        /* the nearest multiple of 2^-24, ties to even, via rint in the default rounding mode */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    }
    uint32_t mant_odd = (absu >> 13) & 1;
    absu += 0xfff + mant_odd; /* round to nearest even at bit 13 */
    return sign | (uint16_t)((absu - 0x38000000u) >> 13);
}

float kiln_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t kiln_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

double kiln_load_f64(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_DTYPE_F32: return ((const float *)p)[i];
    case KILN_DTYPE_F64: return ((const double *)p)[i];
    case KILN_DTYPE_F16: return kiln_f16_to_f32(((const uint16_t *)p)[i]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(((const uint16_t *)p)[i]);
    case KILN_DTYPE_U8: return ((const uint8_t *)p)[i];
    case KILN_DTYPE_I8: return ((const int8_t *)p)[i];
    case KILN_DTYPE_U16: return ((const uint16_t *)p)[i];
    case KILN_DTYPE_I16: return ((const int16_t *)p)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)p)[i];
    case KILN_DTYPE_I64: return (double)((const int64_t *)p)[i];
    case KILN_DTYPE_U32: return ((const uint32_t *)p)[i];
    case KILN_DTYPE_U64: return (double)((const uint64_t *)p)[i];
    case KILN_DTYPE_BOOL: return ((const uint8_t *)p)[i] ? 1.0 : 0.0;
    default: KILN_ASSERT(!"load_f64 of a non-numeric dtype"); return 0;
    }
}

/* Float to int64 as C casts do, but defined for NaN and out-of-range values (saturating). */
static int64_t f64_to_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

int64_t kiln_load_i64(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_DTYPE_I64: return ((const int64_t *)p)[i];
    case KILN_DTYPE_U64: return (int64_t)((const uint64_t *)p)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)p)[i];
    case KILN_DTYPE_U32: return ((const uint32_t *)p)[i];
    case KILN_DTYPE_I16: return ((const int16_t *)p)[i];
    case KILN_DTYPE_U16: return ((const uint16_t *)p)[i];
    case KILN_DTYPE_I8: return ((const int8_t *)p)[i];
    case KILN_DTYPE_U8: return ((const uint8_t *)p)[i];
    case KILN_DTYPE_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return f64_to_i64(kiln_load_f64(t, p, i));
    }
}

void kiln_store_f64(kiln_dtype t, void *p, int64_t i, double v) {
    switch (t) {
    case KILN_DTYPE_F32: ((float *)p)[i] = (float)v; return;
    case KILN_DTYPE_F64: ((double *)p)[i] = v; return;
    case KILN_DTYPE_F16: ((uint16_t *)p)[i] = kiln_f32_to_f16((float)v); return;
    case KILN_DTYPE_BF16: ((uint16_t *)p)[i] = kiln_f32_to_bf16((float)v); return;
    case KILN_DTYPE_BOOL: ((uint8_t *)p)[i] = v != 0.0; return;
    default: kiln_store_i64(t, p, i, f64_to_i64(v)); return;
    }
}

void kiln_store_i64(kiln_dtype t, void *p, int64_t i, int64_t v) {
    switch (t) {
    case KILN_DTYPE_I64: ((int64_t *)p)[i] = v; return;
    case KILN_DTYPE_U64: ((uint64_t *)p)[i] = (uint64_t)v; return;
    case KILN_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)v; return;
    case KILN_DTYPE_U32: ((uint32_t *)p)[i] = (uint32_t)v; return;
    case KILN_DTYPE_I16: ((int16_t *)p)[i] = (int16_t)v; return;
    case KILN_DTYPE_U16: ((uint16_t *)p)[i] = (uint16_t)v; return;
    case KILN_DTYPE_I8: ((int8_t *)p)[i] = (int8_t)v; return;
    case KILN_DTYPE_U8: ((uint8_t *)p)[i] = (uint8_t)v; return;
    case KILN_DTYPE_BOOL: ((uint8_t *)p)[i] = v != 0; return;
    default: kiln_store_f64(t, p, i, (double)v); return;
    }
}

double kiln_round_saturate(kiln_dtype t, double v) {
    double lo, hi;
    switch (t) {
    case KILN_DTYPE_I8: lo = -128, hi = 127; break;
    case KILN_DTYPE_U8: lo = 0, hi = 255; break;
    case KILN_DTYPE_I16: lo = -32768, hi = 32767; break;
    case KILN_DTYPE_U16: lo = 0, hi = 65535; break;
    case KILN_DTYPE_I32: lo = -2147483648.0, hi = 2147483647.0; break;
    case KILN_DTYPE_U32: lo = 0, hi = 4294967295.0; break;
    case KILN_DTYPE_U64: lo = 0, hi = 18446744073709549568.0; break;
    case KILN_DTYPE_BOOL: lo = 0, hi = 1; break;
    default: lo = -9223372036854775808.0, hi = 9223372036854774784.0; break;
    }
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}
