// Hints the Swift kernels cannot express: Swift has no prefetch instruction.
#ifndef DGPERF_CKERNELHINTS_H
#define DGPERF_CKERNELHINTS_H

/// Prefetch the cache line holding `p` for reading (into all cache levels). A hint: never faults, never blocks.
static inline __attribute__((always_inline)) void dg_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

#endif
