#pragma once
#include <stdint.h>
/// Starts counting allocations made by the calling thread.
void malloc_counter_start(void);
/// Stops counting and returns the number of malloc/calloc/realloc/posix_memalign/aligned_alloc calls.
int64_t malloc_counter_stop(void);
