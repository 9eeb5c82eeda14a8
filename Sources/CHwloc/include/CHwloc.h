// Swift's view of hwloc plus the few things Swift cannot import directly.
#ifndef DGPERF_CHWLOC_H
#define DGPERF_CHWLOC_H

#include <hwloc.h>
#include <stdint.h>

/// The CPU the calling thread runs on right now (sched_getcpu), or -1.
int dg_current_cpu(void);

/// Linux thread id of the calling thread (gettid).
int dg_thread_id(void);

/// CPUID leaf/subleaf → eax, ebx, ecx, edx. Returns 0 when the leaf is unsupported or not x86.
int dg_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

/// XGETBV(0): which register states the OS saves (bit 1 SSE, 2 AVX, 5-7 AVX-512). 0 when unavailable.
uint64_t dg_xgetbv0(void);

#endif
