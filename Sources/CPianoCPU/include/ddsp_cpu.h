#ifndef DDSP_CPU_H
#define DDSP_CPU_H

/* What the engine's kernel variants need of the CPU and the OS (cpuid and xgetbv), as bits:
   DDSP_CPU_AVX2   AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE, POPCNT and the OS saving YMM state
                   (what -target-cpu haswell may use);
   DDSP_CPU_AVX512 the above plus AVX-512 F, CD, BW, DQ, VL and the OS saving ZMM state
                   (what -target-cpu skylake-avx512 may use for this code).
   0 on other architectures. */
#define DDSP_CPU_AVX2 1
#define DDSP_CPU_AVX512 2

int ddsp_cpu_features(void);

#endif
