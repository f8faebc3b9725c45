/*
 * kernels_i8_impl.h - the int8-activation kernel bodies of kernels_i8.c,
 * compiled twice: for AVX-512 VNNI, and for AVX-512 VNNI + VBMI (byte
 * permutes: the E2M1 table lookup without masking, GGUF MXFP4's 17-byte
 * blocks and their exponents).  Included only by kernels_i8.c with I8_TGT,
 * I8_INL, I8_FN(name) and I8_VBMI defined.
 *
 * Both kernels take 16 rows at a time, one row per FP32 lane, and fold the
 * 32-column blocks into one accumulator per (row, token) in block order:
 * see the arithmetic in kernels_i8.c.
 */

/* Bytes of one row and of one 128-column chunk of it, per format. */
#define I8_ROWB(TY, K) i8_row_bytes(TY, K)
#define I8_CHB(TY) ((TY) == W_MXFP4 ? 64 : (TY) == W_GG_MXFP4 ? 68 : 136)

typedef struct {
    __m512i lut, lut64, m4, flip, gg_idx, gg_eidx;
} I8_FN(i8_consts);

I8_INL I8_FN(i8_consts) I8_FN(i8_consts_init)(const wtype TY) {
    I8_FN(i8_consts) k;
    k.lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)e2m1_u8));
    k.lut64 = _mm512_load_si512((const void *)e2m1_u8x4);
    k.m4 = _mm512_set1_epi8(0x0F);
    k.flip = _mm512_set1_epi8((char)0x80);
    k.gg_idx = k.gg_eidx = k.m4;
    if (I8_VBMI && TY == W_GG_MXFP4) {
        k.gg_idx = _mm512_load_si512((const void *)gg_code_idx);
        k.gg_eidx = _mm512_set1_epi32(51 << 24 | 34 << 16 | 17 << 8);
    }
    return k;
}

/* One row's 128-column chunk pp (scale bytes sp, release MXFP4 only) as the
 * unsigned bytes of vpdpbusd: MXFP4 kinds: u0 = low nibbles, u1 = high
 * nibbles, dword m of either in block m/4; Q8_0: u0 = blocks 0-1, u1 =
 * blocks 2-3, dword m in block m/8 of its register.  *code: the row's four
 * block scales as stored (E8M0 bytes, or FP16 halves); GGUF MXFP4 with
 * VBMI merges its four exponent bytes into dword `row` of *exps instead. */
I8_INL void I8_FN(i8_unpack)(const uint8_t *pp, const uint8_t *sp, const I8_FN(i8_consts) *k,
                             __m512i *u0, __m512i *u1, uint64_t *code, __m512i *exps, int row, const wtype TY) {
    if (TY == W_Q8_0) {
        __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pp + 2))),
                                       _mm256_loadu_si256((const __m256i *)(pp + 36)), 1);
        __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pp + 70))),
                                       _mm256_loadu_si256((const __m256i *)(pp + 104)), 1);
        *u0 = _mm512_xor_si512(a, k->flip);
        *u1 = _mm512_xor_si512(b, k->flip);
        uint16_t h[4];
        memcpy(&h[0], pp, 2); memcpy(&h[1], pp + 34, 2); memcpy(&h[2], pp + 68, 2); memcpy(&h[3], pp + 102, 2);
        memcpy(code, h, 8);
        return;
    }
    __m512i wv;
    if (TY == W_MXFP4) {
        wv = _mm512_loadu_si512((const void *)pp);
        if (sp) {   /* the few-token kernel reads the scales 16 chunks at a time */
            uint32_t e;
            memcpy(&e, sp, 4);
            *code = e;
        }
    } else {
        if (I8_VBMI) {
            /* the 4 x 16 code bytes of 68 in one byte permute of two loads */
            __m512i A = _mm512_loadu_si512((const void *)pp), B = _mm512_loadu_si512((const void *)(pp + 4));
            wv = _mm512_permutex2var_epi8(A, k->gg_idx, B);
            /* the 4 exponent bytes (0, 17, 34, 51) into dword `row` of exps */
            *exps = _mm512_mask_permutexvar_epi8(*exps, (__mmask64)0xF << (4 * row), k->gg_eidx, A);
        } else {
            wv = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(
                     _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(pp + 1))),
                     _mm_loadu_si128((const __m128i *)(pp + 18)), 1),
                     _mm_loadu_si128((const __m128i *)(pp + 35)), 2),
                     _mm_loadu_si128((const __m128i *)(pp + 52)), 3);
        }
        if (!I8_VBMI) *code = (uint32_t)pp[0] | (uint32_t)pp[17] << 8 | (uint32_t)pp[34] << 16 | (uint32_t)pp[51] << 24;
    }
    if (I8_VBMI) {
        /* vpermb reads only the low 6 bits of an index: a 64-entry table
         * that repeats the 16 codes needs no masking */
        *u0 = _mm512_permutexvar_epi8(wv, k->lut64);
        *u1 = _mm512_permutexvar_epi8(_mm512_srli_epi16(wv, 4), k->lut64);
    } else {
        *u0 = _mm512_shuffle_epi8(k->lut, _mm512_and_si512(wv, k->m4));
        *u1 = _mm512_shuffle_epi8(k->lut, _mm512_and_si512(_mm512_srli_epi16(wv, 4), k->m4));
    }
}

/* The block scales of 16 rows, one register per block of the chunk, lane
 * = row: from code[i] (i8_unpack's per-row codes), or, with code NULL
 * (MXFP4 kinds), from exps, dword i = row i's four exponent bytes. */
I8_INL void I8_FN(i8_scales)(const uint64_t *code, __m512i exps, __m512 ws[4], const wtype TY) {
    if (TY == W_Q8_0) {
        __m512i z0 = _mm512_loadu_si512((const void *)code), z1 = _mm512_loadu_si512((const void *)(code + 8));
        UNROLL for (int b = 0; b < 4; b++) {
            /* word 4i+b of the 64 (row i, block b) */
            __m512i idx = _mm512_add_epi16(_mm512_set_epi16(124, 120, 116, 112, 108, 104, 100, 96, 92, 88, 84, 80, 76, 72, 68, 64,
                                                            60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0),
                                           _mm512_set1_epi16((short)b));
            __m512i h = _mm512_permutex2var_epi16(z0, idx, z1);
            ws[b] = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
        }
        return;
    }
    /* dword i: the 4 exponent bytes of row i (the low dword of code[i]) */
    __m512i e = exps;
    if (code)
        e = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)code))),
                               _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)(code + 8))), 1);
    const __m512i ff = _mm512_set1_epi32(0xFF);
    UNROLL for (int b = 0; b < 4; b++) {
        __m512i eb = _mm512_and_si512(_mm512_srli_epi32(e, 8 * b), ff);
        /* GGUF MXFP4: 2^(e-128) for codes standing for twice the value */
        if (TY == W_GG_MXFP4) eb = _mm512_max_epi32(_mm512_sub_epi32(eb, _mm512_set1_epi32(1)), _mm512_setzero_si512());
        ws[b] = _mm512_castsi512_ps(_mm512_slli_epi32(eb, 23));
    }
}

/* 4x4 transpose of the 128-bit lanes of q0..q3: out[b] = lane b of each. */
I8_INL void I8_FN(i8_tr128)(__m512i q0, __m512i q1, __m512i q2, __m512i q3, __m512i out[4]) {
    __m512i e0 = _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(1, 0, 1, 0));
    __m512i e1 = _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 2, 3, 2));
    __m512i e2 = _mm512_shuffle_i32x4(q2, q3, _MM_SHUFFLE(1, 0, 1, 0));
    __m512i e3 = _mm512_shuffle_i32x4(q2, q3, _MM_SHUFFLE(3, 2, 3, 2));
    out[0] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(2, 0, 2, 0));
    out[1] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(3, 1, 3, 1));
    out[2] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(2, 0, 2, 0));
    out[3] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(3, 1, 3, 1));
}

/* One row's lane sums for one token, 4 lanes per block (128-bit lane b =
 * block b of the chunk). */
I8_INL __m512i I8_FN(i8_lanes)(__m512i u0, __m512i u1, const int8_t *q, const wtype TY) {
    __m512i q0 = _mm512_loadu_si512((const void *)q), q1 = _mm512_loadu_si512((const void *)(q + 64));
    if (TY == W_Q8_0) {
        /* 8 lanes per block: blocks 0-1 in v0, 2-3 in v1; halves added */
        __m512i v0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, q0);
        __m512i v1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, q1);
        return _mm512_add_epi32(_mm512_shuffle_i32x4(v0, v1, _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_i32x4(v0, v1, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, q0), u1, q1);
}

/* 16x16 transpose of dwords: r[i] dword m -> r[m] dword i. */
I8_INL void I8_FN(i8_tr16)(__m512i r[16]) {
    __m512i t[16];
    UNROLL for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    UNROLL for (int g = 0; g < 4; g++) {
        r[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        r[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        r[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        r[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    /* r[4g+m], 128-bit lane L: rows 4g..4g+3 of dword 4L+m */
    UNROLL for (int m = 0; m < 4; m++) {
        __m512i o[4];
        I8_FN(i8_tr128)(r[m], r[4 + m], r[8 + m], r[12 + m], o);
        UNROLL for (int L = 0; L < 4; L++) t[4 * L + m] = o[L];
    }
    UNROLL for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* The 4 blocks of chunk ch into acc[t]: Q[t] holds per 128-bit lane
 * (block) the sums of rows 4g..4g+3; ws: block scales, lane = row. */
I8_INL void I8_FN(i8_dec_fold)(__m512i Q[4][4], const __m512 ws[4], const kern_q8x *const *x, int ch,
                               __m512 acc[4], const int NT) {
    UNROLL for (int t = 0; t < NT; t++) {
        __m512i S[4];
        I8_FN(i8_tr128)(Q[t][0], Q[t][1], Q[t][2], Q[t][3], S);
        UNROLL for (int b = 0; b < 4; b++) {
            __m512i sb = _mm512_add_epi32(S[b], _mm512_set1_epi32(x[t]->corr[ch * 4 + b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb),
                                     _mm512_mul_ps(ws[b], _mm512_set1_ps(x[t]->scale[ch * 4 + b])), acc[t]);
        }
    }
}

/* Few tokens: 16 rows from r0 x NT tokens, all columns.  Per chunk the
 * lane sums of the 16 rows are transposed and added into one register per
 * block (lane = row). */
I8_INL void I8_FN(i8_dec)(const dsv4_weight *w, int r0, const kern_q8x *const *x,
                          float *const *c, const uint8_t *after, const int NT, const wtype TY) {
    const int K = w->cols, nc = K / 128;
    const size_t rb = I8_ROWB(TY, K), cb = I8_CHB(TY);
    const I8_FN(i8_consts) k = I8_FN(i8_consts_init)(TY);
    /* rows are contiguous: row i of the group at base + i * rb */
    const uint8_t *base = (const uint8_t *)w->data + (size_t)r0 * rb;
    const uint8_t *sbase = TY == W_MXFP4 ? w->scale + (size_t)r0 * w->scale_cols : NULL;
    const size_t scols = TY == W_MXFP4 ? (size_t)w->scale_cols : 0;
    /* Prefetch the rows this thread reads next (`after`: the next 16 rows,
     * or at the end of the caller's rows the first of its next chunk; NULL:
     * none) in address order, one chunk's worth per (chunk, row): one
     * sequential DRAM stream per thread
     * instead of 16 interleaved ones (read test, 2 threads: 8 interleaved
     * streams 37 GB/s, in order 48 GB/s), into L2: 16 rows are 16-68 KiB,
     * and in L1 they would evict the rows being read (16 products, 2
     * threads, alternating: MXFP4 2048x4096 24.6 -> 33.3 GB/s, 4096x2048
     * 25.7 -> 32.9, Q8_0 4096x4096 29.6 -> 31.9).  Q8_0 groups of at most
     * 20 KiB (K = 1024) do better in L1 (25.5 -> 27.5 GB/s). */
    const uint8_t *next = after;
    const int q8_l1 = TY == W_Q8_0 && 16 * rb <= 20480;
    __m512 acc[4];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    /* release MXFP4: the scale bytes of 16 chunks (64 per row) are
     * transposed at once, es[ch % 16] = chunk ch's 4 exponents per row */
    alignas(64) uint32_t es[16][16];
    for (int ch = 0; ch < nc; ch++) {
        alignas(64) uint64_t code[16];
        __m512i exps = _mm512_setzero_si512();
        if (TY == W_MXFP4 && !(ch & 15)) {
            const int nb = nc - ch < 16 ? 4 * (nc - ch) : 64;
            const __mmask64 bm = nb == 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
            __m512i e[16];
            UNROLL for (int i = 0; i < 16; i++) {
                const uint8_t *sp = sbase + (size_t)i * scols + ch * 4;
                e[i] = _mm512_maskz_loadu_epi8(bm, (const void *)sp);
                _mm_prefetch((const char *)(sp + 16 * scols), _MM_HINT_T0);   /* the next 16 rows' */
            }
            I8_FN(i8_tr16)(e);
            UNROLL for (int i = 0; i < 16; i++) _mm512_store_si512((void *)es[i], e[i]);
        }
        __m512i Q[4][4];
        UNROLL for (int g = 0; g < 4; g++) {
            __m512i P[4][2];
            UNROLL for (int h = 0; h < 2; h++) {
                __m512i V[4][2];
                UNROLL for (int e = 0; e < 2; e++) {
                    const int i = 4 * g + 2 * h + e;
                    const char *pf = next ? (const char *)next + ((size_t)ch * 16 + (size_t)i) * cb : NULL;
                    if (!pf) {
                        /* nothing this thread reads next */
                    } else if (TY == W_Q8_0 && q8_l1) {
                        _mm_prefetch(pf, _MM_HINT_T0);
                        _mm_prefetch(pf + 64, _MM_HINT_T0);
                        _mm_prefetch(pf + 128, _MM_HINT_T0);
                    } else {
                        _mm_prefetch(pf, _MM_HINT_T1);
                        if (TY != W_MXFP4) _mm_prefetch(pf + 64, _MM_HINT_T1);
                        if (TY == W_Q8_0) _mm_prefetch(pf + 128, _MM_HINT_T1);
                    }
                    __m512i u0, u1;
                    I8_FN(i8_unpack)(base + (size_t)i * rb + (size_t)ch * cb, NULL, &k, &u0, &u1, &code[i], &exps, i, TY);
                    UNROLL for (int t = 0; t < NT; t++)
                        V[t][e] = I8_FN(i8_lanes)(u0, u1, x[t]->q + (size_t)ch * 128, TY);
                }
                /* rows a, b: per 128-bit lane [a x, b x, a y, b y]
                 * (blends run on every vector pipe, shuffles on two) */
                UNROLL for (int t = 0; t < NT; t++) {
                    __m512i ab = _mm512_mask_blend_epi32(0xAAAA, V[t][0], V[t][1]);   /* a0 b1 a2 b3 */
                    __m512i ba = _mm512_mask_blend_epi32(0xAAAA, V[t][1], V[t][0]);   /* b0 a1 b2 a3 */
                    P[t][h] = _mm512_add_epi32(ab, _mm512_shuffle_epi32(ba, _MM_PERM_CDAB));
                }
            }
            /* rows 4g..4g+3: per 128-bit lane (block) the four row sums */
            UNROLL for (int t = 0; t < NT; t++) {
                __m512i cd = _mm512_mask_blend_epi32(0xCCCC, P[t][0], P[t][1]);   /* r0x r1x r2y r3y */
                __m512i dc = _mm512_mask_blend_epi32(0xCCCC, P[t][1], P[t][0]);   /* r2x r3x r0y r1y */
                Q[t][g] = _mm512_add_epi32(cd, _mm512_shuffle_epi32(dc, _MM_PERM_BADC));
            }
        }
        __m512 ws[4];
        if (TY == W_MXFP4) I8_FN(i8_scales)(NULL, _mm512_load_si512((const void *)es[ch & 15]), ws, TY);
        else if (TY == W_GG_MXFP4 && I8_VBMI) I8_FN(i8_scales)(NULL, exps, ws, TY);
        else I8_FN(i8_scales)(code, exps, ws, TY);
        I8_FN(i8_dec_fold)(Q, ws, x, ch, acc, NT);
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_storeu_ps(c[t], acc[t]);
}

/* Slot of (block b of the chunk, step j) in the packed buffer: 9 registers
 * per block, 8 steps of 4 weight bytes per lane and the scales; and the
 * byte offset in the chunk's q of the 4 activation bytes of that step. */
#define I8_SLOT(ch, b, j) (((size_t)(ch) * 4 + (b)) * 9 + (j))
#define I8_QOFF(TY, b, j) ((TY) == W_Q8_0 ? 32 * (b) + 4 * (j) : (j) < 4 ? 16 * (b) + 4 * (j) : 64 + 16 * (b) + 4 * ((j) - 4))

/* Unpack chunks [c0, c0+n) of 16 rows into buf, lane = row. */
I8_INL void I8_FN(i8_pack)(const dsv4_weight *w, int r0, int c0, int n, __m512i *buf, const wtype TY) {
    const int K = w->cols;
    const size_t rb = I8_ROWB(TY, K), cb = I8_CHB(TY);
    const I8_FN(i8_consts) k = I8_FN(i8_consts_init)(TY);
    for (int ch = 0; ch < n; ch++) {
        alignas(64) uint64_t code[16];
        __m512i exps = _mm512_setzero_si512();
        __m512i u[2][16];
        UNROLL for (int i = 0; i < 16; i++) {
            int r = r0 + i;
            const uint8_t *pp = (const uint8_t *)w->data + (size_t)r * rb + (size_t)(c0 + ch) * cb;
            const uint8_t *sp = TY == W_MXFP4 ? w->scale + (size_t)r * w->scale_cols + (size_t)(c0 + ch) * 4 : NULL;
            I8_FN(i8_unpack)(pp, sp, &k, &u[0][i], &u[1][i], &code[i], &exps, i, TY);
        }
        UNROLL for (int h = 0; h < 2; h++) {
            I8_FN(i8_tr16)(u[h]);
            UNROLL for (int m = 0; m < 16; m++) {
                /* dword m of u0/u1 -> (block, step) */
                int b = TY == W_Q8_0 ? 2 * h + m / 8 : m / 4;
                int j = TY == W_Q8_0 ? m % 8 : 4 * h + m % 4;
                _mm512_store_si512((void *)&buf[I8_SLOT(ch, b, j)], u[h][m]);
            }
        }
        __m512 ws[4];
        I8_FN(i8_scales)(TY == W_GG_MXFP4 && I8_VBMI ? NULL : code, exps, ws, TY);
        UNROLL for (int b = 0; b < 4; b++) _mm512_store_ps((void *)&buf[I8_SLOT(ch, b, 8)], ws[b]);
    }
}

/* Many tokens: NT tokens x the 16 packed rows over chunks [c0, c0+n):
 * acc (lane = row) continues from c[t] unless first. */
I8_INL void I8_FN(i8_gemm_nt)(const __m512i *buf, int c0, int n, const kern_q8x *x, float *const *c,
                              int first, const int NT, const wtype TY) {
    __m512 acc[8];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c[t]);
    for (int ch = 0; ch < n; ch++) {
        const int cg = c0 + ch;
        UNROLL for (int b = 0; b < 4; b++) {
            __m512i si[8];
            UNROLL for (int t = 0; t < NT; t++) si[t] = _mm512_set1_epi32(x[t].corr[cg * 4 + b]);
            UNROLL for (int j = 0; j < 8; j++) {
                __m512i a = _mm512_load_si512((const void *)&buf[I8_SLOT(ch, b, j)]);
                UNROLL for (int t = 0; t < NT; t++) {
                    int32_t qq;
                    memcpy(&qq, x[t].q + (size_t)cg * 128 + I8_QOFF(TY, b, j), 4);
                    si[t] = _mm512_dpbusd_epi32(si[t], a, _mm512_set1_epi32(qq));
                }
            }
            __m512 ws = _mm512_load_ps((const void *)&buf[I8_SLOT(ch, b, 8)]);
            UNROLL for (int t = 0; t < NT; t++)
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si[t]), _mm512_mul_ps(ws, _mm512_set1_ps(x[t].scale[cg * 4 + b])),
                                         acc[t]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_storeu_ps(c[t], acc[t]);
}

I8_INL void I8_FN(i8_gemm_any)(const __m512i *buf, int c0, int n, const kern_q8x *x, float *const *c,
                               int first, int nt, const wtype TY) {
    switch (nt) {
    case 1: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 1, TY); break;
    case 2: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 2, TY); break;
    case 3: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 3, TY); break;
    case 4: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 4, TY); break;
    case 5: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 5, TY); break;
    case 6: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 6, TY); break;
    case 7: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 7, TY); break;
    default: I8_FN(i8_gemm_nt)(buf, c0, n, x, c, first, 8, TY); break;
    }
}

#undef I8_TY
#define I8_TY(FN, ...)                                                  \
    switch (w->type) {                                                  \
    case W_MXFP4: FN(__VA_ARGS__, W_MXFP4); break;                      \
    case W_GG_MXFP4: FN(__VA_ARGS__, W_GG_MXFP4); break;                \
    default: FN(__VA_ARGS__, W_Q8_0); break;                            \
    }

/* Entry points: passes of 16 rows; a last pass of fewer rows starts
 * earlier and computes some rows again (the same values, stored again).
 * Products of fewer than 16 rows in all (tests only) take the portable
 * model. */
static I8_TGT void I8_FN(kern_i8)(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                                  float *const *c, int ntok, const void *after) {
    if (nrow < 16) {
        for (int t = 0; t < ntok; t++)
            for (int i = 0; i < nrow; i++) c[t][i] = kern_i8_dot_ref(w, r0 + i, x[t]);
        return;
    }
    for (int i0 = 0; i0 < nrow; i0 += 16) {
        int i = i0 + 16 <= nrow ? i0 : nrow - 16;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        /* the next pass's rows, or after the last pass the caller's next */
        const uint8_t *nx = i0 + 16 < nrow ? kern_i8_row_ptr(w, r0 + i + 16) : after;
        switch (ntok) {
        case 1: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, nx, 1) break;
        case 2: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, nx, 2) break;
        case 3: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, nx, 3) break;
        default: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, nx, 4) break;
        }
    }
}

/* y[t * ldy + r]: row r of token t's output. */
static I8_TGT void I8_FN(kern_i8_gemm)(const dsv4_weight *w, int r0, int nrow, const kern_q8x *x,
                                       float *y, size_t ldy, int T, void *buf) {
    if (nrow < 16) {
        for (int t = 0; t < T; t++)
            for (int i = 0; i < nrow; i++) y[(size_t)t * ldy + r0 + i] = kern_i8_dot_ref(w, r0 + i, &x[t]);
        return;
    }
    const int nc = w->cols / 128;
    __m512i *pb = buf;
    float *ct[8];
    for (int i0 = 0; i0 < nrow; i0 += 16) {
        int i = i0 + 16 <= nrow ? i0 : nrow - 16;
        for (int c0 = 0; c0 < nc; c0 += KERN_I8_SLICE) {
            int n = nc - c0 < KERN_I8_SLICE ? nc - c0 : KERN_I8_SLICE;
            I8_TY(I8_FN(i8_pack), w, r0 + i, c0, n, pb)
            for (int t0 = 0; t0 < T; t0 += 8) {
                int nt = T - t0 < 8 ? T - t0 : 8;
                for (int t = 0; t < nt; t++) ct[t] = y + (size_t)(t0 + t) * ldy + r0 + i;
                /* the q offsets of a step are those of Q8_0 or of the MXFP4 kinds */
                if (w->type == W_Q8_0) I8_FN(i8_gemm_any)(pb, c0, n, x + t0, ct, c0 == 0, nt, W_Q8_0);
                else I8_FN(i8_gemm_any)(pb, c0, n, x + t0, ct, c0 == 0, nt, W_MXFP4);
            }
        }
    }
}
