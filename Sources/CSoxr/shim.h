// The SoX Resampler library (Debian: libsoxr-dev, LGPL-2.1+, dynamically linked).
#include <soxr.h>
