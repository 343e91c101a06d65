// Flush-to-zero / denormals-are-zero for the calling thread (x86 SSE control register).
// Denormal floats in decaying GRU states and reverb tails cost 100x per operation.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static inline unsigned int cfloatenv_enter_ftz(void) {
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
    return old;
}
static inline void cfloatenv_restore(unsigned int old) { _mm_setcsr(old); }
#elif defined(__aarch64__)
static inline unsigned int cfloatenv_enter_ftz(void) {
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" :: "r"(fpcr | (1UL << 24)));
    return (unsigned int)fpcr;
}
static inline void cfloatenv_restore(unsigned int old) {
    unsigned long fpcr = old;
    __asm__ volatile("msr fpcr, %0" :: "r"(fpcr));
}
#else
static inline unsigned int cfloatenv_enter_ftz(void) { return 0; }
static inline void cfloatenv_restore(unsigned int old) { (void)old; }
#endif
