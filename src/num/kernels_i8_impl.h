/*
 * kernels_i8_impl.h - the int8-activation kernel bodies of kernels_i8.c,
 * compiled twice: for AVX-512 VNNI, and for AVX-512 VNNI + VBMI (byte
 * permutes: the E2M1 table lookup without masking, GGUF MXFP4's 17-byte
 * blocks and their exponents).  Included only by kernels_i8.c with I8_TGT,
 * I8_INL, I8_FN(name) and I8_VBMI defined.
 *
 * The few-token kernel takes 4 rows at a time (lane 4 * block position +
 * row), the many-token kernel 16 (lane = row); both keep four partial sums
 * per (row, token), one per block position in a 128-column chunk: see the
 * arithmetic in kernels_i8.c.
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
        if (sp) {   /* the packed kernel's scales (the few-token kernel reads its own) */
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

/* Lane sums of 4 rows (v[r]: 4 lanes per block, 128-bit lane b = block b)
 * added per block: lane 4b + r = row r's sum of block b.  Blends run on
 * every vector pipe, in-lane dword shuffles beside vpdpbusd. */
I8_INL __m512i I8_FN(i8_sum4)(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
    /* rows a, b: per 128-bit lane [a0 b1 a2 b3] + [b0 a1 b2 a3] swapped in pairs = [a01 b01 a23 b23] */
    __m512i p0 = _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, v0, v1),
                                  _mm512_shuffle_epi32(_mm512_mask_blend_epi32(0xAAAA, v1, v0), _MM_PERM_CDAB));
    __m512i p1 = _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, v2, v3),
                                  _mm512_shuffle_epi32(_mm512_mask_blend_epi32(0xAAAA, v3, v2), _MM_PERM_CDAB));
    /* [r0 r1 r2 r3] per 128-bit lane */
    return _mm512_add_epi32(_mm512_mask_blend_epi32(0xCCCC, p0, p1),
                            _mm512_shuffle_epi32(_mm512_mask_blend_epi32(0xCCCC, p1, p0), _MM_PERM_BADC));
}

/* The block scales of 4 rows, lane 4b + r: Q8_0 from code[r] (i8_unpack's
 * four FP16 halves per row), the E8M0 kinds from e (dword r: row r's four
 * exponent bytes). */
I8_INL __m512 I8_FN(i8_scales4)(const uint64_t code[4], __m128i e, const wtype TY) {
    if (TY == W_Q8_0) {
        __m256i h = _mm256_loadu_si256((const void *)code);   /* word 4r + b */
        const __m256i idx = _mm256_set_epi16(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
        return _mm512_cvtph_ps(_mm256_permutexvar_epi16(idx, h));
    }
    /* byte 4r + b -> byte 4b + r, then one dword per byte */
    e = _mm_shuffle_epi8(e, _mm_set_epi8(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0));
    /* GGUF MXFP4: 2^(e-128) for codes standing for twice the value */
    if (TY == W_GG_MXFP4) e = _mm_subs_epu8(e, _mm_set1_epi8(1));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(e), 23));
}

/* Few tokens: 4 rows from r0 x NT tokens, all columns; lane 4b + r of
 * acc[t] is row r's partial of block position b.  pf: where the bytes to
 * prefetch during this pass start (4 rows' worth, in address order: one
 * sequential DRAM stream per thread instead of 4 interleaved ones), or
 * NULL. */
I8_INL void I8_FN(i8_dec)(const dsv4_weight *w, int r0, const kern_q8x *const *x,
                          float *const *c, const uint8_t *pf, const int NT, const wtype TY) {
    const int K = w->cols, nc = K / 128;
    const size_t rb = I8_ROWB(TY, K), cb = I8_CHB(TY);
    const I8_FN(i8_consts) k = I8_FN(i8_consts_init)(TY);
    const uint8_t *base = (const uint8_t *)w->data + (size_t)r0 * rb;
    const uint8_t *sbase = TY == W_MXFP4 ? w->scale + (size_t)r0 * w->scale_cols : NULL;
    const size_t scols = TY == W_MXFP4 ? (size_t)w->scale_cols : 0;
    /* lines per chunk step of the 4 rows: 4, 5 (GGUF MXFP4's 272 bytes), 9 */
    const int npf = (int)((4 * cb + 63) / 64);
    __m512 acc[4];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int ch = 0; ch < nc; ch++) {
        if (pf)   /* into L2: 32 KiB ahead is more than L1 should hold */
            for (int l = 0; l < npf; l++) _mm_prefetch((const char *)pf + 4 * (size_t)ch * cb + 64 * l, _MM_HINT_T1);
        alignas(64) uint64_t code[4];
        __m512i exps = _mm512_setzero_si512();   /* GGUF MXFP4 with VBMI: dword r = row r's exponents */
        __m512i V[4][4];
        UNROLL for (int i = 0; i < 4; i++) {
            __m512i u0, u1;
            I8_FN(i8_unpack)(base + (size_t)i * rb + (size_t)ch * cb, NULL, &k, &u0, &u1, &code[i], &exps, i, TY);
            UNROLL for (int t = 0; t < NT; t++) V[t][i] = I8_FN(i8_lanes)(u0, u1, x[t]->q + (size_t)ch * 128, TY);
        }
        /* the E8M0 kinds' exponents, dword r = row r's four */
        __m128i e4 = _mm512_castsi512_si128(exps);
        if (TY == W_MXFP4) {
            uint32_t e[4];
            UNROLL for (int i = 0; i < 4; i++) memcpy(&e[i], sbase + (size_t)i * scols + (size_t)ch * 4, 4);
            e4 = _mm_set_epi32((int)e[3], (int)e[2], (int)e[1], (int)e[0]);
        } else if (TY == W_GG_MXFP4 && !I8_VBMI) {
            e4 = _mm_set_epi32((int)(uint32_t)code[3], (int)(uint32_t)code[2], (int)(uint32_t)code[1], (int)(uint32_t)code[0]);
        }
        const __m512 ws = I8_FN(i8_scales4)(code, e4, TY);
        UNROLL for (int t = 0; t < NT; t++) {
            __m512i S = _mm512_add_epi32(I8_FN(i8_sum4)(V[t][0], V[t][1], V[t][2], V[t][3]),
                                         _mm512_loadu_si512((const void *)(x[t]->corr + 16 * ch)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(ws, _mm512_loadu_ps(x[t]->scale + 16 * ch)), acc[t]);
        }
    }
    /* ((p0 + p1) + p2) + p3 per row */
    UNROLL for (int t = 0; t < NT; t++) {
        __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(_mm512_castps512_ps128(acc[t]), _mm512_extractf32x4_ps(acc[t], 1)),
                                         _mm512_extractf32x4_ps(acc[t], 2)), _mm512_extractf32x4_ps(acc[t], 3));
        _mm_storeu_ps(c[t], s);
    }
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

/* Many tokens: NT tokens x the 16 packed rows over all nc chunks, block
 * after block; the four partials of each token (block positions 0-3)
 * then folded in order into c[t] (lane = row). */
I8_INL void I8_FN(i8_gemm_nt)(const __m512i *buf, int nc, const kern_q8x *x, float *const *c, const int NT,
                              const wtype TY) {
    __m512 part[4][8];
    UNROLL for (int b = 0; b < 4; b++)
        UNROLL for (int t = 0; t < NT; t++) part[b][t] = _mm512_setzero_ps();
    for (int ch = 0; ch < nc; ch++) {
        UNROLL for (int b = 0; b < 4; b++) {
            __m512i si[8];
            UNROLL for (int t = 0; t < NT; t++) si[t] = _mm512_set1_epi32(x[t].corr[16 * ch + 4 * b]);
            UNROLL for (int j = 0; j < 8; j++) {
                __m512i a = _mm512_load_si512((const void *)&buf[I8_SLOT(ch, b, j)]);
                UNROLL for (int t = 0; t < NT; t++) {
                    int32_t qq;
                    memcpy(&qq, x[t].q + (size_t)ch * 128 + I8_QOFF(TY, b, j), 4);
                    si[t] = _mm512_dpbusd_epi32(si[t], a, _mm512_set1_epi32(qq));
                }
            }
            __m512 ws = _mm512_load_ps((const void *)&buf[I8_SLOT(ch, b, 8)]);
            UNROLL for (int t = 0; t < NT; t++)
                part[b][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si[t]),
                                             _mm512_mul_ps(ws, _mm512_set1_ps(x[t].scale[16 * ch + 4 * b])), part[b][t]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
        _mm512_storeu_ps(c[t], _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(part[0][t], part[1][t]), part[2][t]), part[3][t]));
}

I8_INL void I8_FN(i8_gemm_any)(const __m512i *buf, int nc, const kern_q8x *x, float *const *c, int nt,
                               const wtype TY) {
    switch (nt) {
    case 1: I8_FN(i8_gemm_nt)(buf, nc, x, c, 1, TY); break;
    case 2: I8_FN(i8_gemm_nt)(buf, nc, x, c, 2, TY); break;
    case 3: I8_FN(i8_gemm_nt)(buf, nc, x, c, 3, TY); break;
    case 4: I8_FN(i8_gemm_nt)(buf, nc, x, c, 4, TY); break;
    case 5: I8_FN(i8_gemm_nt)(buf, nc, x, c, 5, TY); break;
    case 6: I8_FN(i8_gemm_nt)(buf, nc, x, c, 6, TY); break;
    case 7: I8_FN(i8_gemm_nt)(buf, nc, x, c, 7, TY); break;
    default: I8_FN(i8_gemm_nt)(buf, nc, x, c, 8, TY); break;
    }
}

#undef I8_TY
#define I8_TY(FN, ...)                                                  \
    switch (w->type) {                                                  \
    case W_MXFP4: FN(__VA_ARGS__, W_MXFP4); break;                      \
    case W_GG_MXFP4: FN(__VA_ARGS__, W_GG_MXFP4); break;                \
    default: FN(__VA_ARGS__, W_Q8_0); break;                            \
    }

/* Entry points.  Few tokens: passes of 4 rows; a last pass of fewer rows
 * starts earlier and computes some rows again (the same values, stored
 * again).  Products of fewer than 4 rows in all (tests only) take the
 * portable model.  Each pass prefetches the bytes I8_PF_BYTES on (rounded
 * up to whole passes) in this thread's stream: its own rows, then
 * `after`'s (chunks of at least 16 rows: a product's own chunks are 256
 * KiB, only small products have chunks shorter than the distance).
 * Slice decode, 2 threads on two CCDs, the experts' products w1 / w2 in
 * GB/s: 8 KiB ahead 40.7-41.6 / 40.0-41.5, 16 KiB 48.3-49.5 / 40.5-43.9,
 * 32 KiB 48.1-49.4 / 41.9-43.1, 64 KiB 45.8-49.2 / 40.2-41.4; GGUF Q8_0
 * 131072 x 1024 (bench_linear, 2 threads, one CCD, 4 KiB pages): 16 KiB
 * 26.7-29.7, 32 KiB 29.7-33.9 (the 16-row kernel before: 33.6-35.7).
 *
 * MXFP4's scales are a tensor of their own (K/32 bytes a row): the same
 * rows' scale lines are prefetched with them.  Without, each pass waited
 * for its 4 rows' scale lines at the first block (the hardware prefetcher
 * does not follow that thin stream well): the slice's routed experts in
 * the model alternating with a read probe, two CCDs, fraction of the
 * neighbouring probes, w2 (K = 2048) 0.44-0.53 -> 0.67-0.82, w1 (K =
 * 4096) 0.73-0.79 -> 0.83. */
#define I8_PF_BYTES 32768

/* Prefetch (into L2) the scale lines of rows i..i+3 of the call's rows
 * (r0, nrow), the rows past nrow from `after`. */
I8_INL void I8_FN(i8_prefetch_scales)(const dsv4_weight *w, int r0, int nrow, int i, kern_i8_next after) {
    for (int r = i; r < i + 4; r++) {
        const dsv4_weight *ws = w;
        int row = r0 + r;
        if (r >= nrow) {
            ws = after.w;
            row = after.row + (r - nrow);
            if (!ws || ws->type != W_MXFP4 || row >= ws->rows) return;
        }
        const char *p = (const char *)ws->scale + (size_t)row * ws->scale_cols;
        for (int l = 0; l < ws->scale_cols; l += 64) _mm_prefetch(p + l, _MM_HINT_T1);
    }
}

static I8_TGT void I8_FN(kern_i8)(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                                  float *const *c, int ntok, kern_i8_next after) {
    if (nrow < 4) {
        for (int t = 0; t < ntok; t++)
            for (int i = 0; i < nrow; i++) c[t][i] = kern_i8_dot_ref(w, r0 + i, x[t]);
        return;
    }
    const size_t rb = i8_row_bytes(w->type, w->cols), pass = 4 * rb;
    const size_t dist = (I8_PF_BYTES + pass - 1) / pass * pass;
    const int ahead = (int)(dist / rb);   /* rows */
    const uint8_t *end = kern_i8_row_ptr(w, r0 + nrow);
    const uint8_t *next = after.w ? (const uint8_t *)kern_i8_row_ptr(after.w, after.row) : NULL;
    for (int i0 = 0; i0 < nrow; i0 += 4) {
        int i = i0 + 4 <= nrow ? i0 : nrow - 4;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        const uint8_t *pf = (const uint8_t *)kern_i8_row_ptr(w, r0 + i0) + dist;
        if (pf >= end) pf = next ? next + (pf - end) : NULL;
        if (w->type == W_MXFP4) I8_FN(i8_prefetch_scales)(w, r0, nrow, i0 + ahead, after);
        switch (ntok) {
        case 1: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, pf, 1) break;
        case 2: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, pf, 2) break;
        case 3: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, pf, 3) break;
        default: I8_TY(I8_FN(i8_dec), w, r0 + i, x, ci, pf, 4) break;
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
        I8_TY(I8_FN(i8_pack), w, r0 + i, 0, nc, pb)
        for (int t0 = 0; t0 < T; t0 += 8) {
            int nt = T - t0 < 8 ? T - t0 : 8;
            for (int t = 0; t < nt; t++) ct[t] = y + (size_t)(t0 + t) * ldy + r0 + i;
            /* the q offsets of a step are those of Q8_0 or of the MXFP4 kinds */
            if (w->type == W_Q8_0) I8_FN(i8_gemm_any)(pb, nc, x + t0, ct, nt, W_Q8_0);
            else I8_FN(i8_gemm_any)(pb, nc, x + t0, ct, nt, W_MXFP4);
        }
    }
}
