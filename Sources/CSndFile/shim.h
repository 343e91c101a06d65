// libsndfile (Debian: libsndfile1-dev, LGPL-2.1+, dynamically linked).
#include <sndfile.h>
