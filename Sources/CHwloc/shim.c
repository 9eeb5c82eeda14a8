#define _GNU_SOURCE
#include "CHwloc.h"
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <errno.h>
#include <string.h>
#if defined(__linux__)
#include <linux/perf_event.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

int dg_current_cpu(void) { return sched_getcpu(); }

int dg_thread_id(void) { return (int)syscall(SYS_gettid); }

int dg_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d)) return 0;
    out[0] = a; out[1] = b; out[2] = c; out[3] = d;
    return 1;
#else
    (void)leaf; (void)subleaf; out[0] = out[1] = out[2] = out[3] = 0;
    return 0;
#endif
}

uint64_t dg_xgetbv0(void) {
#if defined(__x86_64__) || defined(__i386__)
    uint32_t a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27))) return 0; /* OSXSAVE */
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

int dg_thread_context_switches(long *voluntary, long *involuntary) {
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return -1;
    *voluntary = ru.ru_nvcsw;
    *involuntary = ru.ru_nivcsw;
    return 0;
}

int dg_perf_event_open(uint32_t type, uint64_t config) {
#if defined(__linux__) && defined(SYS_perf_event_open)
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = type;
    attr.config = config;
    /* User space only for hardware events; software events (context switches) happen in the kernel. */
    attr.exclude_kernel = type == 0;
    attr.exclude_hv = type == 0;
    attr.inherit = 1;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    return fd < 0 ? -errno : (int)fd;
#else
    (void)type; (void)config;
    return -ENOSYS;
#endif
}

int dg_perf_event_read(int fd, uint64_t *value) {
    ssize_t n = read(fd, value, sizeof *value);
    if (n == (ssize_t)sizeof *value) return 0;
    return n < 0 ? -errno : -EIO;
}
