// Interposes the allocator for the test process: every allocator call (allocation or free)
// made by a thread that called malloc_counter_start() is counted, then forwarded to glibc.
#define _GNU_SOURCE
#include "MallocCounter.h"
#include <stddef.h>
#include <errno.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

static __thread int counting = 0;
static __thread int64_t allocations = 0;
static __thread int64_t frees = 0;

void malloc_counter_start(void) { allocations = 0; frees = 0; counting = 1; }
int64_t malloc_counter_stop(void) { counting = 0; return allocations + frees; }
int64_t malloc_counter_allocations(void) { return allocations; }
int64_t malloc_counter_frees(void) { return frees; }

void *malloc(size_t n) { if (counting) allocations++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (counting) allocations++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (counting) allocations++; return __libc_realloc(p, n); }
// free(NULL) does nothing, so it is not counted.
void free(void *p) { if (counting && p) frees++; __libc_free(p); }
void cfree(void *p) { free(p); }
void *aligned_alloc(size_t al, size_t n) { if (counting) allocations++; return __libc_memalign(al, n); }
void *memalign(size_t al, size_t n) { if (counting) allocations++; return __libc_memalign(al, n); }
void *valloc(size_t n) { if (counting) allocations++; return __libc_valloc(n); }
void *pvalloc(size_t n) { if (counting) allocations++; return __libc_pvalloc(n); }
int posix_memalign(void **out, size_t al, size_t n) {
    if (counting) allocations++;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
