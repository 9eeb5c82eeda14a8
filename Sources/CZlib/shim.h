// zlib (Debian zlib1g-dev) for gzip'd IDX files and CRC32 of weight files.
#ifndef DGPERF_CZLIB_H
#define DGPERF_CZLIB_H
#include <zlib.h>
#endif
