/*
 * cpu.c - see cpu.h.  Detection uses the compiler's __builtin_cpu_supports,
 * which also checks that the OS saves the wide registers (XCR0).
 */
#include "num/cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cpu_features feats;
static int feats_done;
static int isa_forced = -1;

const cpu_features *cpu_get_features(void) {
    if (feats_done) return &feats;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    feats.avx2 = __builtin_cpu_supports("avx2");
    feats.fma = __builtin_cpu_supports("fma");
    feats.f16c = 1;   /* every AVX2 CPU we target has F16C; checked below */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    feats.f16c = __builtin_cpu_supports("f16c");
#endif
    feats.avx512f = __builtin_cpu_supports("avx512f");
    feats.avx512bw = __builtin_cpu_supports("avx512bw");
    feats.avx512vl = __builtin_cpu_supports("avx512vl");
    feats.avx512dq = __builtin_cpu_supports("avx512dq");
    feats.avx512vnni = __builtin_cpu_supports("avx512vnni");
    feats.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 10)
    feats.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
#endif
    feats_done = 1;
    return &feats;
}

cpu_isa_level cpu_best_isa(void) {
    const cpu_features *f = cpu_get_features();
    /* The AVX-512 family uses F, BW, VL and BF16 (the FAST-mode GEMM). */
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512bf16 &&
        f->avx2 && f->fma && f->f16c)
        return ISA_AVX512;
    if (f->avx2 && f->fma && f->f16c) return ISA_AVX2;
    return ISA_C;
}

static cpu_isa_level clamp(cpu_isa_level l) {
    cpu_isa_level b = cpu_best_isa();
    return l > b ? b : l;
}

cpu_isa_level cpu_isa(void) {
    if (isa_forced >= 0) return (cpu_isa_level)isa_forced;
    cpu_isa_level l = cpu_best_isa();
    const char *e = getenv("DSV4_ISA");
    if (e && *e) {
        if (!strcmp(e, "c")) l = ISA_C;
        else if (!strcmp(e, "avx2")) l = ISA_AVX2;
        else if (!strcmp(e, "avx512")) l = ISA_AVX512;
        l = clamp(l);
    }
    isa_forced = (int)l;
    return l;
}

cpu_isa_level cpu_set_isa(cpu_isa_level lvl) {
    isa_forced = (int)clamp(lvl);
    return (cpu_isa_level)isa_forced;
}

const char *cpu_isa_name(cpu_isa_level lvl) {
    switch (lvl) {
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    default: return "c";
    }
}

const char *cpu_features_string(void) {
    static char buf[160];
    const cpu_features *f = cpu_get_features();
    snprintf(buf, sizeof buf, "%s%s%s%s%s%s%s%s%s",
             f->avx2 ? "avx2 " : "", f->fma ? "fma " : "", f->f16c ? "f16c " : "",
             f->avx512f ? "avx512f " : "", f->avx512bw ? "avx512bw " : "",
             f->avx512vl ? "avx512vl " : "", f->avx512vnni ? "avx512vnni " : "",
             f->avx512bf16 ? "avx512bf16 " : "", f->avx512vbmi ? "avx512vbmi" : "");
    size_t n = strlen(buf);
    if (n && buf[n - 1] == ' ') buf[n - 1] = 0;
    return buf;
}
