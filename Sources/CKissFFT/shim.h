// KissFFT, float build (Debian: libkissfft-dev, BSD-3-Clause).
#include <kissfft/kiss_fftr.h>
