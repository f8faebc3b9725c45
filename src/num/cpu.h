/*
 * cpu.h - which vector instruction sets this CPU has, and which kernel
 * family (ISA level) the matrix kernels use.
 *
 * The binary is built without -march: every SIMD kernel carries its own
 * __attribute__((target(...))) and is only called when cpu_isa() says the
 * CPU supports it.  The level can be lowered for testing and comparison:
 * environment DSV4_ISA=c|avx2|avx512, or cpu_set_isa() (tests).
 */
#ifndef DSV4_CPU_H
#define DSV4_CPU_H

typedef enum { ISA_C = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_COUNT } cpu_isa_level;

typedef struct {
    int avx2, fma, f16c;            /* the AVX2 kernel family needs all three */
    int avx512f, avx512bw, avx512vl, avx512dq;
    int avx512vnni, avx512bf16, avx512vbmi;
} cpu_features;

const cpu_features *cpu_get_features(void);
/* Highest level the CPU supports. */
cpu_isa_level cpu_best_isa(void);
/* Level in use: DSV4_ISA if set (clamped to what the CPU has), else the
 * best; or what cpu_set_isa() chose last. */
cpu_isa_level cpu_isa(void);
/* Force a level (clamped to the CPU's best); returns the level set.
 * Not thread-safe against running kernels: call between products. */
cpu_isa_level cpu_set_isa(cpu_isa_level lvl);
const char *cpu_isa_name(cpu_isa_level lvl);
/* One line describing the features, e.g. "avx512f avx512bw ... bf16". */
const char *cpu_features_string(void);

#endif
