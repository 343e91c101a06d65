#include "ddsp_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

int ddsp_cpu_features(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, movbe = (c >> 22) & 1, popcnt = (c >> 23) & 1;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && movbe && popcnt && osxsave && avx && f16c)) return 0;
    const unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return 0;                       /* XMM and YMM state */
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int bmi1 = (b >> 3) & 1, avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512cd = (b >> 28) & 1;
    const int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    unsigned int ea = 0, eb = 0, ec = 0, ed = 0;
    if (!__get_cpuid(0x80000001u, &ea, &eb, &ec, &ed)) return 0;
    const int lzcnt = (ec >> 5) & 1;
    if (!(bmi1 && avx2 && bmi2 && lzcnt)) return 0;
    int features = DDSP_CPU_AVX2;
    if (avx512f && avx512dq && avx512cd && avx512bw && avx512vl && (xcr0 & 0xE6) == 0xE6)   /* opmask, ZMM */
        features |= DDSP_CPU_AVX512;
    return features;
}
#else
int ddsp_cpu_features(void) { return 0; }
#endif
