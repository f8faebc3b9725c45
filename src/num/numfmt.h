/*
 * numfmt.h - the number formats of the V4 release: BF16, FP8 E4M3FN,
 * UE8M0 scales, FP4 E2M1 (MXFP4), and the rounding helpers that exact mode
 * needs to reproduce the reference's quantisation (act_quant, fp4 quant).
 */
#ifndef DSV4_NUMFMT_H
#define DSV4_NUMFMT_H
#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
/* Round-to-nearest-even, NaN kept quiet. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

/* Exact value tables, filled once by numfmt_init() (idempotent, thread-safe
 * enough: called from model load before threads exist). */
extern float e4m3_table[256];
extern float e8m0_table[256];
extern const float e2m1_table[16];
void numfmt_init(void);

static inline float e4m3_to_f32(uint8_t b) { return e4m3_table[b]; }
static inline float e8m0_to_f32(uint8_t b) { return e8m0_table[b]; }

/* Round x (already scaled into range, |x| <= 448) to the nearest E4M3FN
 * value, ties to even; returns the value as float. */
float e4m3_round(float x);
/* Round to nearest E2M1 value (|x| <= 6), ties to even. */
float e2m1_round(float x);

/* The reference's power-of-two scale: 2^ceil(log2(amax / maxval)),
 * computed from the float bits as the kernel does. */
float pow2_scale_ceil(float amax, float inv_maxval);

/* act_quant round trip of n values in blocks of `block`: x <- e4m3(x/s)*s
 * with s the ue8m0 scale of the block (amax floor 1e-4). */
void fp8_roundtrip(float *x, int n, int block);
/* fp4_act_quant round trip (amax floor 6*2^-126). */
void fp4_roundtrip(float *x, int n, int block);

#endif

/* Round a double once to BF16 (round-to-nearest-even), without the double
 * rounding that going through float would add. */
static inline uint16_t f32_to_bf16_from_double(double d) {
    float f = (float)d;                 /* may be rounded */
    uint16_t h = f32_to_bf16(f);
    /* If f landed exactly on a bf16 tie point, the first rounding decided
     * the tie: redo it from the exact value. */
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0xffff) == 0x8000 && (double)f != d) {
        uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
        float flo, fhi; memcpy(&flo, &lo, 4); memcpy(&fhi, &hi, 4);
        /* pick the side d lies on (toward larger magnitude when |d|>|f|) */
        int up = (d > (double)f) == (f > 0);
        h = (uint16_t)((up ? hi : lo) >> 16);
        (void)flo; (void)fhi;
    }
    return h;
}
