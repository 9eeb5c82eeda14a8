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

/// Context switches of the calling thread so far (getrusage(RUSAGE_THREAD), which needs _GNU_SOURCE).
/// Returns 0 on success, -1 when the kernel does not report per-thread usage.
int dg_thread_context_switches(long *voluntary, long *involuntary);

/// perf_event_open(2) for the calling process (pid 0, any CPU; hardware events count user space only), enabled at once,
/// inherited by threads created afterwards. `type`/`config` as in linux/perf_event.h (0 = hardware,
/// 1 = software). Returns the fd, or -errno when the kernel refuses (ENOENT/EOPNOTSUPP: no such counter,
/// e.g. no PMU in a VM; EACCES/EPERM: perf_event_paranoid; ENOSYS: no perf events at all).
int dg_perf_event_open(uint32_t type, uint64_t config);

/// Reads a counter fd opened by dg_perf_event_open. Returns 0 on success, -errno otherwise.
int dg_perf_event_read(int fd, uint64_t *value);

/// Time-stamp counter (RDTSC): ~10 ns to read versus ~45 ns for clock_gettime in a VM, so per-job busy
/// time costs little. Only meaningful with an invariant TSC (see CycleClock). 0 when not x86.
static inline uint64_t dg_rdtsc(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}

/// Spin-wait hint (x86 PAUSE): lets the sibling hyperthread run and saves power while polling.
static inline void dg_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#endif
