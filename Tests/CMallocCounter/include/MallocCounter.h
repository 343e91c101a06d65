#pragma once
#include <stdint.h>
/// Starts counting allocator calls made by the calling thread: malloc, calloc, realloc,
/// posix_memalign, aligned_alloc, memalign, valloc, pvalloc, and free of a non-null pointer.
void malloc_counter_start(void);
/// Stops counting and returns the number of allocator calls (allocations + frees).
int64_t malloc_counter_stop(void);
/// The allocations and the frees of the last counting period, apart.
int64_t malloc_counter_allocations(void);
int64_t malloc_counter_frees(void);
