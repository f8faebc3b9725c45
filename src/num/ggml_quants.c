/*
 * ggml_quants.c - GGUF block formats: sizes, exact dequantisation,
 * quantisers for the writer, and dot kernels (see ggml_quants.h).
 *
 * Kernels are written once as always-inline generic C and instantiated
 * three times under __attribute__((target(...))): portable, AVX2+FMA and
 * AVX-512 (F/BW/VL/VNNI), so the compiler vectorises each for its ISA.
 * The formats that matter most for speed (Q8_0 and MXFP4, the official
 * MXFP4_MOE layout) also have hand-written AVX2 / AVX-512 int8 paths.  The
 * family is chosen once with __builtin_cpu_supports; no global -march.
 */
#include "num/ggml_quants.h"
#include "num/pool.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GQ_X86 1
#else
#define GQ_X86 0
#endif

#define QK_K 256
#define AI __attribute__((always_inline)) static inline

/* ---- half precision ----------------------------------------------------- */

float ggml_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) { u = sign; }
        else {                                   /* subnormal: man * 2^-24 */
            float f = (float)man * 0x1p-24f;
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f; memcpy(&f, &u, 4); return f;
}

uint16_t ggml_f32_to_f16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;           /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;          /* overflow (RNE) -> inf */
    if (a < 0x38800000u) {                               /* result subnormal or 0 */
        float v; memcpy(&v, &a, 4);
        /* v * 2^24 rounded to nearest even integer is the subnormal mantissa */
        float m = v * 0x1p24f;
        uint32_t q = (uint32_t)m; float r = m - (float)q;
        if (r > 0.5f || (r == 0.5f && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t e = (a >> 23) - 112, man = a & 0x7fffff;
    uint32_t h = (e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

/* ---- tables ------------------------------------------------------------- */

static const int8_t kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ggml's iq2xxs_grid: 256 points of 8 coordinates, each one of the three
 * levels {8, 25, 43}; stored as 2 bits per coordinate, coordinate 0 in the
 * low bits. */
static const uint16_t iq2xxs_packed[256] = {
    0x0000, 0x0002, 0x0005, 0x0008, 0x000a, 0x0011, 0x0014, 0x0020, 0x0022, 0x0028, 0x002a, 0x0041,
    0x0044, 0x0050, 0x0058, 0x0061, 0x0064, 0x0080, 0x0082, 0x008a, 0x00a2, 0x0101, 0x0104, 0x0110,
    0x0115, 0x0140, 0x0184, 0x0198, 0x0200, 0x0202, 0x0222, 0x0282, 0x0401, 0x0404, 0x0410, 0x0421,
    0x0424, 0x0440, 0x0442, 0x0448, 0x0460, 0x0481, 0x0484, 0x0490, 0x04a4, 0x0500, 0x0502, 0x0508,
    0x0520, 0x0546, 0x0569, 0x0580, 0x0591, 0x0609, 0x0610, 0x0640, 0x0684, 0x06a4, 0x0800, 0x0805,
    0x0808, 0x0814, 0x0828, 0x0841, 0x0844, 0x0850, 0x0852, 0x0888, 0x0904, 0x0940, 0x0a02, 0x0a14,
    0x1001, 0x1004, 0x1010, 0x1021, 0x1040, 0x1060, 0x1084, 0x1090, 0x1095, 0x1100, 0x1108, 0x1120,
    0x1150, 0x115a, 0x1180, 0x1224, 0x1245, 0x1400, 0x1408, 0x1420, 0x1425, 0x1449, 0x1480, 0x1518,
    0x1562, 0x1600, 0x1616, 0x1801, 0x1804, 0x1810, 0x1840, 0x1881, 0x1900, 0x1905, 0x19a0, 0x1a51,
    0x2000, 0x2002, 0x200a, 0x2044, 0x2061, 0x2080, 0x2082, 0x2129, 0x2148, 0x2200, 0x2202, 0x2401,
    0x2404, 0x2410, 0x2440, 0x2456, 0x2500, 0x2541, 0x2564, 0x2690, 0x2808, 0x2820, 0x2894, 0x2a44,
    0x4001, 0x4004, 0x4010, 0x4018, 0x4021, 0x4024, 0x4040, 0x4048, 0x4056, 0x4060, 0x4081, 0x4084,
    0x4090, 0x4100, 0x4120, 0x4161, 0x4180, 0x4185, 0x4201, 0x4210, 0x4248, 0x4256, 0x4268, 0x4400,
    0x4408, 0x4420, 0x4480, 0x4499, 0x4512, 0x4524, 0x4600, 0x4801, 0x4804, 0x4810, 0x4840, 0x4845,
    0x4900, 0x4958, 0x4961, 0x4982, 0x4a45, 0x4a90, 0x5000, 0x5008, 0x5011, 0x5019, 0x5020, 0x5080,
    0x5088, 0x5104, 0x5142, 0x51a4, 0x5291, 0x5490, 0x5492, 0x550a, 0x5601, 0x5654, 0x5800, 0x5811,
    0x5819, 0x5864, 0x5940, 0x5a08, 0x6004, 0x6010, 0x6040, 0x6068, 0x6100, 0x6155, 0x6218, 0x6260,
    0x6400, 0x6405, 0x6510, 0x6512, 0x6584, 0x6842, 0x8000, 0x8002, 0x800a, 0x8041, 0x8082, 0x8104,
    0x8118, 0x8140, 0x8211, 0x8401, 0x8404, 0x8410, 0x8415, 0x8440, 0x8460, 0x8500, 0x8546, 0x8594,
    0x8609, 0x8640, 0x8660, 0x8802, 0x8904, 0x8a11, 0x9004, 0x9010, 0x9024, 0x9040, 0x90a1, 0x9116,
    0x9180, 0x9245, 0x9400, 0x9422, 0x9444, 0x9551, 0x9881, 0x9920, 0xa002, 0xa050, 0xa085, 0xa109,
    0xa200, 0xa418, 0xa850, 0xa904
};
static const uint8_t iq2xxs_levels[3] = {8, 25, 43};

/* ggml's iq3xxs_grid: 256 points of 4 coordinates, levels
 * {4,12,20,28,36,44,52,62}; 3 bits per coordinate. */
static const uint16_t iq3xxs_packed[256] = {
    0x0000, 0x0002, 0x0004, 0x0009, 0x000b, 0x000f, 0x0010, 0x0012, 0x0019, 0x0022, 0x003b, 0x003d,
    0x0041, 0x0043, 0x0048, 0x004a, 0x0051, 0x0055, 0x0058, 0x005a, 0x0061, 0x006c, 0x0078, 0x0080,
    0x0082, 0x0084, 0x0089, 0x0090, 0x0092, 0x0099, 0x009b, 0x009f, 0x00a9, 0x00af, 0x00bd, 0x00c1,
    0x00c7, 0x00c8, 0x00ca, 0x00d5, 0x00f8, 0x010b, 0x011f, 0x0124, 0x012f, 0x013b, 0x013d, 0x0141,
    0x0147, 0x015a, 0x016a, 0x019d, 0x01b4, 0x01c8, 0x01cc, 0x01ce, 0x01e3, 0x01f1, 0x0201, 0x0203,
    0x0208, 0x020a, 0x0211, 0x0213, 0x0218, 0x021a, 0x021c, 0x0227, 0x0228, 0x0240, 0x0242, 0x0249,
    0x0250, 0x0252, 0x0281, 0x0283, 0x0288, 0x028a, 0x0291, 0x0298, 0x02ba, 0x02c0, 0x02c2, 0x02d0,
    0x02d9, 0x02e6, 0x02f6, 0x0301, 0x0305, 0x0328, 0x0350, 0x0354, 0x0366, 0x0379, 0x0385, 0x03d2,
    0x03e0, 0x0400, 0x0402, 0x0409, 0x040b, 0x0410, 0x0412, 0x0416, 0x0419, 0x0422, 0x0441, 0x0443,
    0x0445, 0x0448, 0x044a, 0x0451, 0x0458, 0x0473, 0x0477, 0x0478, 0x0480, 0x0482, 0x0489, 0x048f,
    0x0490, 0x0492, 0x049f, 0x04a0, 0x04ad, 0x04c1, 0x04c8, 0x04cc, 0x04f8, 0x04fc, 0x051d, 0x052b,
    0x0543, 0x0557, 0x0561, 0x057c, 0x05c1, 0x05c3, 0x05ce, 0x05e5, 0x0601, 0x0608, 0x060a, 0x0611,
    0x0613, 0x0628, 0x0635, 0x063a, 0x0640, 0x0642, 0x0650, 0x0659, 0x0664, 0x0666, 0x0681, 0x0683,
    0x0688, 0x0695, 0x06aa, 0x06ba, 0x06c9, 0x06db, 0x0718, 0x0727, 0x073a, 0x0740, 0x0746, 0x0752,
    0x076d, 0x078c, 0x079e, 0x07b3, 0x07db, 0x07f0, 0x0804, 0x080f, 0x081d, 0x081f, 0x082b, 0x082f,
    0x087c, 0x0890, 0x089f, 0x08a0, 0x08b0, 0x08b6, 0x08c7, 0x08e5, 0x0904, 0x0929, 0x0934, 0x0955,
    0x0963, 0x0978, 0x09c5, 0x09c8, 0x09ca, 0x09d8, 0x0a0a, 0x0a21, 0x0a38, 0x0a40, 0x0a46, 0x0a56,
    0x0a6d, 0x0a8c, 0x0a9a, 0x0aba, 0x0ac2, 0x0aeb, 0x0b08, 0x0b13, 0x0b17, 0x0b3a, 0x0b42, 0x0b59,
    0x0ba8, 0x0bd4, 0x0be2, 0x0c14, 0x0c24, 0x0c26, 0x0c34, 0x0c51, 0x0c71, 0x0c8f, 0x0cb4, 0x0cd8,
    0x0cde, 0x0d24, 0x0d45, 0x0d6a, 0x0d9b, 0x0dc3, 0x0dd1, 0x0e03, 0x0e05, 0x0e07, 0x0e08, 0x0e1a,
    0x0e2a, 0x0e56, 0x0e60, 0x0e8a, 0x0ea5, 0x0eaa, 0x0ec0, 0x0ecd, 0x0edb, 0x0ef0, 0x0f11, 0x0f21,
    0x0f40, 0x0f42, 0x0f54, 0x0f98
};
static const uint8_t iq3xxs_levels[8] = {4, 12, 20, 28, 36, 44, 52, 62};

static uint8_t iq2xxs_grid[256][8];
static uint8_t iq3xxs_grid[256][4];
static uint8_t ksigns[128];            /* 7 sign bits + parity bit */
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void) {
    for (int i = 0; i < 256; i++) {
        for (int j = 0; j < 8; j++) iq2xxs_grid[i][j] = iq2xxs_levels[(iq2xxs_packed[i] >> (2 * j)) & 3];
        for (int j = 0; j < 4; j++) iq3xxs_grid[i][j] = iq3xxs_levels[(iq3xxs_packed[i] >> (3 * j)) & 7];
    }
    for (int i = 0; i < 128; i++)
        ksigns[i] = (uint8_t)(i | ((__builtin_popcount(i) & 1) << 7));
}
static inline void tables(void) { pthread_once(&tables_once, tables_init); }

/* ---- sizes -------------------------------------------------------------- */

int ggml_block_values(wtype t) {
    switch (t) {
    case W_F32: case W_BF16: case W_F16: return 1;
    case W_Q8_0: case W_GG_MXFP4: return 32;
    case W_Q2_K: case W_Q3_K: case W_Q4_K: case W_Q5_K: case W_Q6_K:
    case W_IQ2_XXS: case W_IQ3_XXS: return QK_K;
    default: return 0;
    }
}

size_t ggml_block_bytes(wtype t) {
    switch (t) {
    case W_F32: return 4;
    case W_BF16: case W_F16: return 2;
    case W_Q8_0: return 34;
    case W_GG_MXFP4: return 17;
    case W_Q2_K: return 84;
    case W_Q3_K: return 110;
    case W_Q4_K: return 144;
    case W_Q5_K: return 176;
    case W_Q6_K: return 210;
    case W_IQ2_XXS: return 66;
    case W_IQ3_XXS: return 98;
    default: return 0;
    }
}

size_t ggml_row_size(wtype t, int cols) {
    if (t == W_F32 || t == W_BF16 || t < W_F16 || t >= W_NTYPES || cols < 0) return 0;
    int bv = ggml_block_values(t);
    if (cols % bv) return 0;
    return (size_t)(cols / bv) * ggml_block_bytes(t);
}

/* ---- scalar block decoders ---------------------------------------------- */

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline float h2f(const uint8_t *p) { return ggml_f16_to_f32(rd16(p)); }
static inline float e8m0_half(uint8_t e) { return ldexpf(1.0f, (int)e - 128); }

/* The 6-bit scale j and min j of the 12-byte packed scales of Q4_K/Q5_K. */
static inline void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) { *d = q[j] & 63; *m = q[j + 4] & 63; }
    else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q3_K's 16 signed 6-bit scales (stored -32 biased). */
static inline void q3k_scales(const uint8_t *s, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/*
 * Every block format is decoded into "int8 values + per-16 scale/min":
 *   w[i] = sc[i/16] * q[i] - mn[i/16]
 * (q fits in int8).  One decoder then serves exact dequantisation, the
 * float dot and the int8 dot.  Returns the number of values (32 or 256).
 */
AI int decode_block(wtype t, const uint8_t *b, int8_t *q, float *sc, float *mn) {
    switch (t) {
    case W_Q8_0: {
        float d = h2f(b);
        memcpy(q, b + 2, 32);
        sc[0] = sc[1] = d; mn[0] = mn[1] = 0;
        return 32;
    }
    case W_GG_MXFP4: {
        float d = e8m0_half(b[0]);
        for (int j = 0; j < 16; j++) {
            q[j] = kvalues_mxfp4[b[1 + j] & 15];
            q[j + 16] = kvalues_mxfp4[b[1 + j] >> 4];
        }
        sc[0] = sc[1] = d; mn[0] = mn[1] = 0;
        return 32;
    }
    case W_Q2_K: {
        const uint8_t *scales = b, *qs = b + 16;
        float d = h2f(b + 80), dmin = h2f(b + 82);
        /* value i: 128-half n = i/128, shift 2*((i%128)/32), byte (i%32) + 32n */
        for (int i = 0; i < 256; i++) {
            int n = i >> 7, r = i & 127;
            q[i] = (int8_t)((qs[32 * n + (r & 31)] >> (2 * (r >> 5))) & 3);
        }
        for (int g = 0; g < 16; g++) { sc[g] = d * (scales[g] & 15); mn[g] = dmin * (scales[g] >> 4); }
        return 256;
    }
    case W_Q3_K: {
        const uint8_t *hm = b, *qs = b + 32;
        float d = h2f(b + 108);
        int8_t s[16];
        q3k_scales(b + 96, s);
        for (int i = 0; i < 256; i++) {
            int n = i >> 7, r = i & 127, j = r >> 5, l = r & 31;
            int v = (qs[32 * n + l] >> (2 * j)) & 3;
            int hbit = (hm[l] >> (4 * n + j)) & 1;
            q[i] = (int8_t)(v - (hbit ? 0 : 4));
        }
        for (int g = 0; g < 16; g++) { sc[g] = d * s[g]; mn[g] = 0; }
        return 256;
    }
    case W_Q4_K: case W_Q5_K: {
        float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *scales = b + 4;
        const uint8_t *qh = t == W_Q5_K ? b + 16 : NULL;
        const uint8_t *qs = t == W_Q5_K ? b + 48 : b + 16;
        /* sub-block s (of 32): chunk s/2 of 32 bytes, low nibble if s even */
        for (int s = 0; s < 8; s++) {
            int is, im;
            scale_min_k4(s, scales, &is, &im);
            const uint8_t *c = qs + 32 * (s >> 1);
            for (int l = 0; l < 32; l++) {
                int v = (s & 1) ? (c[l] >> 4) : (c[l] & 15);
                if (qh) v += ((qh[l] >> s) & 1) << 4;
                q[32 * s + l] = (int8_t)v;
            }
            sc[2 * s] = sc[2 * s + 1] = d * is;
            mn[2 * s] = mn[2 * s + 1] = dmin * im;
        }
        return 256;
    }
    case W_Q6_K: {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *scales = (const int8_t *)(b + 192);
        float d = h2f(b + 208);
        for (int i = 0; i < 256; i++) {
            int n = i >> 7, r = i & 127, j = r >> 5, l = r & 31;
            /* j: 0 low nibble of ql[l], 1 low of ql[l+32], 2 high of ql[l], 3 high of ql[l+32] */
            int lo = ql[64 * n + l + 32 * (j & 1)];
            lo = (j & 2) ? (lo >> 4) : (lo & 15);
            int hi = (qh[32 * n + l] >> (2 * j)) & 3;
            q[i] = (int8_t)((lo | (hi << 4)) - 32);
        }
        for (int g = 0; g < 16; g++) { sc[g] = d * scales[g]; mn[g] = 0; }
        return 256;
    }
    case W_IQ2_XXS: {
        float d = h2f(b);
        const uint8_t *qs = b + 2;
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *g8 = qs + 8 * ib;
            uint32_t aux = rd32(g8 + 4);
            float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint8_t *grid = iq2xxs_grid[g8[l]];
                uint8_t signs = ksigns[(aux >> (7 * l)) & 127];
                for (int j = 0; j < 8; j++)
                    q[32 * ib + 8 * l + j] = (int8_t)((signs >> j) & 1 ? -grid[j] : grid[j]);
            }
            sc[2 * ib] = sc[2 * ib + 1] = db; mn[2 * ib] = mn[2 * ib + 1] = 0;
        }
        return 256;
    }
    case W_IQ3_XXS: {
        float d = h2f(b);
        const uint8_t *qs = b + 2, *ss = b + 2 + 64;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t aux = rd32(ss + 4 * ib);
            float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                uint8_t signs = ksigns[(aux >> (7 * l)) & 127];
                const uint8_t *g1 = iq3xxs_grid[qs[8 * ib + 2 * l]];
                const uint8_t *g2 = iq3xxs_grid[qs[8 * ib + 2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    q[32 * ib + 8 * l + j] = (int8_t)((signs >> j) & 1 ? -g1[j] : g1[j]);
                    q[32 * ib + 8 * l + j + 4] = (int8_t)((signs >> (j + 4)) & 1 ? -g2[j] : g2[j]);
                }
            }
            sc[2 * ib] = sc[2 * ib + 1] = db; mn[2 * ib] = mn[2 * ib + 1] = 0;
        }
        return 256;
    }
    default:
        return 0;
    }
}

void ggml_dequant_row(wtype t, const void *row, float *out, int cols) {
    const uint8_t *b = row;
    if (t == W_F16) {
        for (int c = 0; c < cols; c++) out[c] = h2f(b + 2 * c);
        return;
    }
    int bv = ggml_block_values(t);
    size_t bb = ggml_block_bytes(t);
    if (bv <= 1 || t == W_F32 || t == W_BF16) { memset(out, 0, (size_t)cols * 4); return; }
    tables();
    int8_t q[QK_K]; float sc[16], mn[16];
    for (int c = 0; c + bv <= cols; c += bv, b += bb) {
        int n = decode_block(t, b, q, sc, mn);
        /* sc*q - mn in float: exact for Q8_0/MXFP4/IQ (mn = 0, product of a
         * float and a small int) and the same expression ggml evaluates for
         * the k-quants (d*scale computed first, then * q, then - min). */
        for (int i = 0; i < n; i++) out[c + i] = sc[i >> 4] * (float)q[i] - mn[i >> 4];
    }
}

/* ---- quantisers --------------------------------------------------------- */

int ggml_can_quantize(wtype t) { return t == W_F16 || t == W_Q8_0 || t == W_GG_MXFP4; }

static int best_mxfp4(float x, float d) {
    int best = 0; float err = fabsf(kvalues_mxfp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float e = fabsf(kvalues_mxfp4[i] * d - x);
        if (e < err) { best = i; err = e; }
    }
    return best;
}

size_t ggml_quantize_row(wtype t, const float *x, void *outv, int cols) {
    uint8_t *out = outv;
    size_t rs = ggml_row_size(t, cols);
    if (!rs) return 0;
    switch (t) {
    case W_F16:
        for (int c = 0; c < cols; c++) { uint16_t h = ggml_f32_to_f16(x[c]); memcpy(out + 2 * c, &h, 2); }
        return rs;
    case W_Q8_0:
        for (int c = 0; c < cols; c += 32, out += 34) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[c + j]));
            float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
            uint16_t h = ggml_f32_to_f16(d); memcpy(out, &h, 2);
            for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[c + j] * id);
        }
        return rs;
    case W_GG_MXFP4:
        for (int c = 0; c < cols; c += 32, out += 17) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[c + j]));
            int e = 0;
            if (amax > 0) {
                e = (int)floorf(log2f(amax)) - 2 + 127;
                if (e < 0) e = 0;
                if (e > 254) e = 254;
            }
            float d = e8m0_half((uint8_t)e);
            out[0] = (uint8_t)e;
            for (int j = 0; j < 16; j++)
                out[1 + j] = (uint8_t)(best_mxfp4(x[c + j], d) | (best_mxfp4(x[c + 16 + j], d) << 4));
        }
        return rs;
    default:
        return 0;
    }
}

/* ---- activation quantisation -------------------------------------------- */

void ggml_quantize_x_q8(const float *x, int cols, ggml_q8x *xq) {
    for (int b = 0; b < cols / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        int s0 = 0, s1 = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)lrintf(v[j] * id);
            xq[b].q[j] = (int8_t)q;
            if (j < 16) s0 += q; else s1 += q;
        }
        xq[b].d = d;
        xq[b].sum16[0] = (int16_t)s0; xq[b].sum16[1] = (int16_t)s1;
    }
}

/* ---- generic kernels (instantiated per ISA) ----------------------------- */

AI float dot_f32(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < 16; u++) acc[u] += a[i + u] * b[i + u];
    float s = 0;
    for (int u = 0; u < 16; u++) s += acc[u];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AI void gen_dot_rows(wtype t, const void *rows, size_t stride, int nrows,
                     const float *x, int cols, float *y) {
    if (t == W_F16) {
        float buf[256];
        for (int r = 0; r < nrows; r++) {
            const uint8_t *p = (const uint8_t *)rows + (size_t)r * stride;
            float s = 0;
            for (int c = 0; c < cols; c += 256) {
                int n = cols - c < 256 ? cols - c : 256;
                for (int i = 0; i < n; i++) buf[i] = h2f(p + 2 * (c + i));
                s += dot_f32(buf, x + c, n);
            }
            y[r] = s;
        }
        return;
    }
    int bv = ggml_block_values(t);
    size_t bb = ggml_block_bytes(t);
    int8_t q[QK_K]; float sc[16], mn[16], w[QK_K];
    for (int r = 0; r < nrows; r++) {
        const uint8_t *b = (const uint8_t *)rows + (size_t)r * stride;
        float s = 0;
        for (int c = 0; c < cols; c += bv, b += bb) {
            int n = decode_block(t, b, q, sc, mn);
            for (int i = 0; i < n; i++) w[i] = sc[i >> 4] * (float)q[i] - mn[i >> 4];
            s += dot_f32(w, x + c, n);
        }
        y[r] = s;
    }
}

AI int isum16(const int8_t *a, const int8_t *b) {
    int s = 0;
    for (int i = 0; i < 16; i++) s += a[i] * b[i];
    return s;
}

AI void gen_dot_rows_q8(wtype t, const void *rows, size_t stride, int nrows,
                        const ggml_q8x *xq, int cols, float *y) {
    int bv = ggml_block_values(t);
    size_t bb = ggml_block_bytes(t);
    if (bv <= 1) {                       /* F16: dequantise the activations */
        float xf[256];
        for (int r = 0; r < nrows; r++) {
            const uint8_t *p = (const uint8_t *)rows + (size_t)r * stride;
            float s = 0;
            for (int c = 0; c < cols; c += 32) {
                const ggml_q8x *xb = xq + c / 32;
                for (int i = 0; i < 32; i++) xf[i] = xb->d * xb->q[i];
                float w[32];
                for (int i = 0; i < 32; i++) w[i] = h2f(p + 2 * (c + i));
                s += dot_f32(w, xf, 32);
            }
            y[r] = s;
        }
        return;
    }
    int8_t q[QK_K]; float sc[16], mn[16];
    for (int r = 0; r < nrows; r++) {
        const uint8_t *b = (const uint8_t *)rows + (size_t)r * stride;
        float s = 0;
        for (int c = 0; c < cols; c += bv, b += bb) {
            int n = decode_block(t, b, q, sc, mn);
            const ggml_q8x *xb = xq + c / 32;
            for (int g = 0; g < n / 16; g++) {
                const ggml_q8x *xg = xb + g / 2;
                int is = isum16(q + 16 * g, xg->q + 16 * (g & 1));
                s += xg->d * (sc[g] * (float)is - mn[g] * (float)xg->sum16[g & 1]);
            }
        }
        y[r] = s;
    }
}

/* ---- ISA instances ------------------------------------------------------ */

typedef void (*dot_f_fn)(wtype, const void *, size_t, int, const float *, int, float *);
typedef void (*dot_q_fn)(wtype, const void *, size_t, int, const ggml_q8x *, int, float *);

static void dot_f_portable(wtype t, const void *rows, size_t stride, int nrows,
                           const float *x, int cols, float *y) {
    gen_dot_rows(t, rows, stride, nrows, x, cols, y);
}
static void dot_q_portable(wtype t, const void *rows, size_t stride, int nrows,
                           const ggml_q8x *xq, int cols, float *y) {
    gen_dot_rows_q8(t, rows, stride, nrows, xq, cols, y);
}

#if GQ_X86
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

T_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 int8 weights of one Q8_0 / MXFP4 block as a vector. */
T_AVX2 static inline __m256i load_q8_0(const uint8_t *b) { return _mm256_loadu_si256((const __m256i *)(b + 2)); }
T_AVX2 static inline __m256i load_mxfp4(const uint8_t *b) {
    const __m128i tbl = _mm_loadu_si128((const __m128i *)kvalues_mxfp4);
    __m128i raw = _mm_loadu_si128((const __m128i *)(b + 1));
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(15));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15));
    return _mm256_set_m128i(_mm_shuffle_epi8(tbl, hi), _mm_shuffle_epi8(tbl, lo));
}

/* int8 x int8 -> 8 int32 lanes (|w| <= 127 or -128, |x| <= 127). */
T_AVX2 static inline __m256i idot_avx2(__m256i w, __m256i x) {
    __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
}
T_AVX512 static inline __m256i idot_vnni(__m256i w, __m256i x) {
    __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
}

/* 32 int8 -> 4 x 8 floats, dotted with x[0..32). */
T_AVX2 static inline __m256 fdot32_avx2(__m256i w, const float *x, __m256 acc, __m256 d) {
    __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
    __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), s);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), s);
    return _mm256_fmadd_ps(s, d, acc);
}

#define DEFINE_ISA(SUF, TGT, IDOT)                                                          \
TGT static void dot_f_##SUF(wtype t, const void *rows, size_t stride, int nrows,          \
                            const float *x, int cols, float *y) {                        \
    if (t != W_Q8_0 && t != W_GG_MXFP4) { gen_dot_rows(t, rows, stride, nrows, x, cols, y); return; } \
    size_t bb = ggml_block_bytes(t);                                                      \
    for (int r = 0; r < nrows; r++) {                                                     \
        const uint8_t *b = (const uint8_t *)rows + (size_t)r * stride;                    \
        __m256 acc = _mm256_setzero_ps();                                                 \
        for (int c = 0; c < cols; c += 32, b += bb) {                                     \
            __m256i w = t == W_Q8_0 ? load_q8_0(b) : load_mxfp4(b);                       \
            float d = t == W_Q8_0 ? h2f(b) : e8m0_half(b[0]);                             \
            acc = fdot32_avx2(w, x + c, acc, _mm256_set1_ps(d));                          \
        }                                                                                 \
        y[r] = hsum256(acc);                                                              \
    }                                                                                     \
}                                                                                         \
TGT static void dot_q_##SUF(wtype t, const void *rows, size_t stride, int nrows,          \
                            const ggml_q8x *xq, int cols, float *y) {                    \
    if (t != W_Q8_0 && t != W_GG_MXFP4) { gen_dot_rows_q8(t, rows, stride, nrows, xq, cols, y); return; } \
    size_t bb = ggml_block_bytes(t);                                                      \
    int r = 0;                                                                            \
    for (; r + 2 <= nrows; r += 2) {   /* two rows share each activation load */         \
        const uint8_t *b0 = (const uint8_t *)rows + (size_t)r * stride, *b1 = b0 + stride; \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                        \
        for (int c = 0; c < cols; c += 32, b0 += bb, b1 += bb) {                          \
            const ggml_q8x *xb = xq + c / 32;                                             \
            __m256i xv = _mm256_loadu_si256((const __m256i *)xb->q);                      \
            __m256i w0, w1; float d0, d1;                                                 \
            if (t == W_Q8_0) { w0 = load_q8_0(b0); w1 = load_q8_0(b1); d0 = h2f(b0); d1 = h2f(b1); } \
            else { w0 = load_mxfp4(b0); w1 = load_mxfp4(b1); d0 = e8m0_half(b0[0]); d1 = e8m0_half(b1[0]); } \
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(IDOT(w0, xv)), _mm256_set1_ps(d0 * xb->d), a0); \
            a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(IDOT(w1, xv)), _mm256_set1_ps(d1 * xb->d), a1); \
        }                                                                                 \
        y[r] = hsum256(a0); y[r + 1] = hsum256(a1);                                       \
    }                                                                                     \
    for (; r < nrows; r++) {                                                              \
        const uint8_t *b = (const uint8_t *)rows + (size_t)r * stride;                    \
        __m256 acc = _mm256_setzero_ps();                                                 \
        for (int c = 0; c < cols; c += 32, b += bb) {                                     \
            const ggml_q8x *xb = xq + c / 32;                                             \
            __m256i xv = _mm256_loadu_si256((const __m256i *)xb->q);                      \
            __m256i w = t == W_Q8_0 ? load_q8_0(b) : load_mxfp4(b);                       \
            float d = t == W_Q8_0 ? h2f(b) : e8m0_half(b[0]);                             \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(IDOT(w, xv)), _mm256_set1_ps(d * xb->d), acc); \
        }                                                                                 \
        y[r] = hsum256(acc);                                                              \
    }                                                                                     \
}

DEFINE_ISA(avx2, T_AVX2, idot_avx2)
DEFINE_ISA(avx512, T_AVX512, idot_vnni)
#endif

/* ---- dispatch ----------------------------------------------------------- */

static struct { const char *name; dot_f_fn f; dot_q_fn q; } isa_tab[] = {
    {"portable", dot_f_portable, dot_q_portable},
#if GQ_X86
    {"avx2", dot_f_avx2, dot_q_avx2},
    {"avx512", dot_f_avx512, dot_q_avx512},
#endif
};
static int isa_cur = -1;

static int isa_supported(int i) {
#if GQ_X86
    __builtin_cpu_init();
    if (i == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (i == 2) return isa_supported(1) && __builtin_cpu_supports("avx512f") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512vnni");
#endif
    return i == 0;
}

static int isa_pick(void) {
    int i = __atomic_load_n(&isa_cur, __ATOMIC_ACQUIRE);
    if (i >= 0) return i;
    tables();
    int best = 0;
    for (int k = (int)(sizeof isa_tab / sizeof isa_tab[0]) - 1; k > 0; k--)
        if (isa_supported(k)) { best = k; break; }
    __atomic_store_n(&isa_cur, best, __ATOMIC_RELEASE);
    return best;
}

const char *ggml_isa(void) { return isa_tab[isa_pick()].name; }

int ggml_force_isa(const char *name) {
    tables();
    if (!name) { __atomic_store_n(&isa_cur, -1, __ATOMIC_RELEASE); isa_pick(); return 0; }
    for (int k = 0; k < (int)(sizeof isa_tab / sizeof isa_tab[0]); k++)
        if (!strcmp(isa_tab[k].name, name)) {
            if (!isa_supported(k)) return -1;
            __atomic_store_n(&isa_cur, k, __ATOMIC_RELEASE);
            return 0;
        }
    return -1;
}

void ggml_vec_dot_rows(wtype t, const void *rows, size_t row_stride, int nrows,
                       const float *x, int cols, float *y) {
    isa_tab[isa_pick()].f(t, rows, row_stride, nrows, x, cols, y);
}

void ggml_vec_dot_rows_q8(wtype t, const void *rows, size_t row_stride, int nrows,
                          const ggml_q8x *xq, int cols, float *y) {
    isa_tab[isa_pick()].q(t, rows, row_stride, nrows, xq, cols, y);
}

/* ---- threaded product ---------------------------------------------------- */

int ggml_linear_supports(const dsv4_weight *w) {
    return w->type >= W_F16 && w->type < W_NTYPES && ggml_row_size(w->type, w->cols) > 0;
}

typedef struct {
    const dsv4_weight *w;
    const float *x;
    const ggml_q8x *xq;
    int T;
    float *y;
    size_t rs;
    atomic_int next;
} gl_job;

/* Row blocks small enough that a block's weights stay in L2 while every
 * token passes over them. */
#define GL_ROWS 16

static void gl_worker(void *arg, int tid, int nth) {
    (void)tid; (void)nth;
    gl_job *j = arg;
    const dsv4_weight *w = j->w;
    int K = w->cols, nb = K / 32;
    for (;;) {
        int r0 = atomic_fetch_add(&j->next, GL_ROWS);
        if (r0 >= w->rows) break;
        int n = w->rows - r0 < GL_ROWS ? w->rows - r0 : GL_ROWS;
        const uint8_t *rows = (const uint8_t *)w->data + (size_t)r0 * j->rs;
        for (int t = 0; t < j->T; t++) {
            float *yt = j->y + (size_t)t * w->rows + r0;
            if (j->xq) ggml_vec_dot_rows_q8(w->type, rows, j->rs, n, j->xq + (size_t)t * nb, K, yt);
            else ggml_vec_dot_rows(w->type, rows, j->rs, n, j->x + (size_t)t * K, K, yt);
        }
    }
}

void ggml_linear(const dsv4_weight *w, const float *x, int T, float *y, int int8_act, struct dsv4_pool *pool) {
    gl_job j = {.w = w, .x = x, .T = T, .y = y, .rs = ggml_row_size(w->type, w->cols)};
    ggml_q8x *xq = NULL;
    if (int8_act && w->cols % 32 == 0) {
        int nb = w->cols / 32;
        xq = malloc((size_t)T * nb * sizeof *xq);
        if (xq) for (int t = 0; t < T; t++) ggml_quantize_x_q8(x + (size_t)t * w->cols, w->cols, xq + (size_t)t * nb);
    }
    j.xq = xq;
    atomic_init(&j.next, 0);
    isa_pick();
    if (pool && (size_t)w->rows * w->cols * T >= 65536) pool_run(pool, gl_worker, &j);
    else gl_worker(&j, 0, 1);
    free(xq);
}
