// zlib (Debian: zlib1g-dev, zlib licence): deflate for the trainer's PNG pictures.
#include <zlib.h>
