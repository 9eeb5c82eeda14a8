// Hints the Swift kernels cannot express: Swift has no prefetch instruction.
#ifndef DGPERF_CKERNELHINTS_H
#define DGPERF_CKERNELHINTS_H

#include <stdint.h>
#include <emmintrin.h>

/// Prefetch the cache line holding `p` for reading, into L1 (prefetcht0: measured faster here than t1/t2 into L2).
/// A hint: never faults, never blocks.
static inline __attribute__((always_inline)) void dg_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Bit i set when byte i of the 64 bytes at `p` is not zero (SSE2, baseline x86-64): one branch per 64 mask flags
/// for the callers that walk a mask's set flags, where testing 8 flags a word mispredicted once per word.
static inline __attribute__((always_inline)) uint64_t dg_nonzero_bytes64(const void *p) {
    const __m128i zero = _mm_setzero_si128();
    const unsigned char *b = (const unsigned char *)p;
    uint64_t m0 = (uint16_t)~_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)b), zero));
    uint64_t m1 = (uint16_t)~_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 16)), zero));
    uint64_t m2 = (uint16_t)~_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 32)), zero));
    uint64_t m3 = (uint16_t)~_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 48)), zero));
    return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
}

/// out[0..<width] from the compact row `src` (AVX-512F; call only where the CPU has it): chunk c of 16 outputs takes
/// src[offsets[c] ...] into the lanes whose bit is set in masks[c], in order, and 0 elsewhere (vexpandps). A shared
/// mask's full-width output row in width/16 instructions, where a store per active unit took 4-5 % of a layer.
/// Reads up to 15 floats past the last one it uses: `src` must be followed by 16 readable floats.
void dg_expand_row_avx512(float *out, const float *src, const uint16_t *masks, const int32_t *offsets, int width);

#endif
