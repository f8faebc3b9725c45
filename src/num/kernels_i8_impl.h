/*
 * kernels_i8_impl.h - the int8-activation kernel body of kernels_i8.c,
 * compiled twice: for AVX-512 VNNI, and for AVX-512 VNNI + VBMI (byte
 * permutes, used for GGUF MXFP4's 17-byte blocks).  Included only by
 * kernels_i8.c with I8_TGT, I8_INL, I8_FN(name) and I8_VBMI defined.
 */
/* Byte L/4 of a broadcast dword into the low byte of lane L. */
I8_INL __m512i I8_FN(spread4)(int32_t four) {
    const __m512i sidx = _mm512_set_epi8(
        -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3,
        -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2,
        -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1,
        -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0);
    return _mm512_shuffle_epi8(_mm512_set1_epi32(four), sidx);
}

I8_INL uint8_t I8_FN(sat_dec)(uint8_t e) { return e ? (uint8_t)(e - 1) : 0; }

/* NR rows x NT tokens, all columns, for one weight format TY.  Rows past
 * nrow repeat row 0 (their results are not stored). */
I8_INL void I8_FN(i8_nt)(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
               float *const *c, const int NT, const int NR, const wtype TY) {
    const int K = w->cols, nc = K / 128;
    const size_t rb = TY == W_MXFP4 ? (size_t)K / 2 : TY == W_GG_MXFP4 ? (size_t)K / 32 * 17 : (size_t)K / 32 * 34;
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)e2m1_u8));
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    __m512i gg_idx = m4, gg_sidx = m4;
    if (I8_VBMI && TY == W_GG_MXFP4) {
        gg_idx = _mm512_load_si512((const void *)gg_code_idx);
        gg_sidx = _mm512_load_si512((const void *)gg_exp_idx);
    }
    const uint8_t *p[8], *s[8];
    UNROLL for (int i = 0; i < NR; i++) {
        int r = r0 + (i < nrow ? i : 0);
        p[i] = (const uint8_t *)w->data + (size_t)r * rb;
        s[i] = TY == W_MXFP4 ? w->scale + (size_t)r * w->scale_cols : NULL;
    }
    /* Prefetch the next group of rows (contiguous: NR x rb bytes) in
     * address order, one chunk's worth per (chunk, row): one sequential DRAM
     * stream per thread instead of NR interleaved ones (read test, 2
     * threads: 8 interleaved streams 37 GB/s, in order 48 GB/s). */
    const uint8_t *next = p[0] + (size_t)NR * rb;
    const size_t ahead_s = TY == W_MXFP4 ? (size_t)NR * w->scale_cols : 0;
    const size_t cb = TY == W_MXFP4 ? 64 : TY == W_GG_MXFP4 ? 68 : 136;   /* bytes per chunk */
    const int lanes = TY == W_Q8_0 ? 32 : 16;
    __m512 acc[4][8];
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < NR; i++) acc[t][i] = _mm512_setzero_ps();
    for (int ch = 0; ch < nc; ch++) {
        UNROLL for (int i = 0; i < NR; i++) {
            const uint8_t *pp = p[i] + (size_t)ch * cb;
            {
                const char *pf = (const char *)next + ((size_t)ch * NR + (size_t)i) * cb;
                _mm_prefetch(pf, _MM_HINT_T0);
                if (TY != W_MXFP4) _mm_prefetch(pf + 64, _MM_HINT_T0);
                if (TY == W_Q8_0) _mm_prefetch(pf + 128, _MM_HINT_T0);
            }
            __m512i u0, u1;
            __m512 ws0, ws1 = _mm512_setzero_ps();
            if (TY == W_Q8_0) {
                u0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pp + 2))),
                                        _mm256_loadu_si256((const __m256i *)(pp + 36)), 1);
                u1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pp + 70))),
                                        _mm256_loadu_si256((const __m256i *)(pp + 104)), 1);
                u0 = _mm512_xor_si512(u0, flip);
                u1 = _mm512_xor_si512(u1, flip);
                uint16_t h[4];
                memcpy(&h[0], pp, 2); memcpy(&h[1], pp + 34, 2); memcpy(&h[2], pp + 68, 2); memcpy(&h[3], pp + 102, 2);
                __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)h));
                __m512 dd = _mm512_broadcast_f32x4(d4);
                ws0 = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), dd);
                ws1 = _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2), dd);
            } else {
                __m512i wv;
                int32_t sb = 0;
                if (TY == W_MXFP4) {
                    if (!(ch & 15)) _mm_prefetch((const char *)(s[i] + ahead_s + ch * 4), _MM_HINT_T0);
                    wv = _mm512_loadu_si512((const void *)pp);
                    memcpy(&sb, s[i] + ch * 4, 4);
                } else if (I8_VBMI) {
                    /* the 4 x 16 code bytes of 68 in one byte permute of two
                     * loads; the exponent bytes into their lanes by another */
                    __m512i A = _mm512_loadu_si512((const void *)pp), B = _mm512_loadu_si512((const void *)(pp + 4));
                    wv = _mm512_permutex2var_epi8(A, gg_idx, B);
                    __m512i e = _mm512_maskz_permutexvar_epi8(0x1111111111111111ULL, gg_sidx, A);
                    ws0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_subs_epu8(e, _mm512_set1_epi8(1)), 23));
                } else {
                    wv = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(
                             _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(pp + 1))),
                             _mm_loadu_si128((const __m128i *)(pp + 18)), 1),
                             _mm_loadu_si128((const __m128i *)(pp + 35)), 2),
                             _mm_loadu_si128((const __m128i *)(pp + 52)), 3);
                    sb = (int32_t)((uint32_t)I8_FN(sat_dec)(pp[0]) | (uint32_t)I8_FN(sat_dec)(pp[17]) << 8 |
                                   (uint32_t)I8_FN(sat_dec)(pp[34]) << 16 | (uint32_t)I8_FN(sat_dec)(pp[51]) << 24);
                }
                u0 = _mm512_shuffle_epi8(lut, _mm512_and_si512(wv, m4));
                u1 = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4));
                if (!(I8_VBMI && TY == W_GG_MXFP4)) ws0 = _mm512_castsi512_ps(_mm512_slli_epi32(I8_FN(spread4)(sb), 23));
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *q = x[t]->q + (size_t)ch * 128;
                const int32_t *cr = x[t]->corr + ch * lanes;
                const float *xs = x[t]->scale + ch * lanes;
                if (TY == W_Q8_0) {
                    __m512i s0 = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)cr), u0,
                                                     _mm512_loadu_si512((const void *)q));
                    __m512i s1 = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(cr + 16)), u1,
                                                     _mm512_loadu_si512((const void *)(q + 64)));
                    acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(ws0, _mm512_loadu_ps(xs)), acc[t][i]);
                    acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(ws1, _mm512_loadu_ps(xs + 16)), acc[t][i]);
                } else {
                    __m512i sum = _mm512_loadu_si512((const void *)cr);
                    sum = _mm512_dpbusd_epi32(sum, u0, _mm512_loadu_si512((const void *)q));
                    sum = _mm512_dpbusd_epi32(sum, u1, _mm512_loadu_si512((const void *)(q + 64)));
                    acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws0, _mm512_loadu_ps(xs)), acc[t][i]);
                }
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < NR; i++)
            if (i < nrow) c[t][i] = _mm512_reduce_add_ps(acc[t][i]);
}

#undef I8_TY
#define I8_TY(NT, NR)                                                                   \
    switch (w->type) {                                                                  \
    case W_MXFP4: I8_FN(i8_nt)(w, r0 + i, n, x, ci, NT, NR, W_MXFP4); break;                   \
    case W_GG_MXFP4: I8_FN(i8_nt)(w, r0 + i, n, x, ci, NT, NR, W_GG_MXFP4); break;             \
    default: I8_FN(i8_nt)(w, r0 + i, n, x, ci, NT, NR, W_Q8_0); break;                         \
    }

static I8_TGT void I8_FN(kern_i8)(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                        float *const *c, int ntok) {
    /* 8 rows per pass for one or two tokens, else 4: at most 16
     * accumulator chains */
    for (int i = 0; i < nrow;) {
        int n = nrow - i;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        if (ntok <= 2 && n >= 8) {
            n = 8;
            if (ntok == 1) { I8_TY(1, 8) } else { I8_TY(2, 8) }
        } else {
            if (n > 4) n = 4;
            switch (ntok) {
            case 1: I8_TY(1, 4) break;
            case 2: I8_TY(2, 4) break;
            case 3: I8_TY(3, 4) break;
            default: I8_TY(4, 4) break;
            }
        }
        i += n;
    }
}

