// The hints are `static inline` in include/CKernelHints.h (inlined into the Swift callers); the AVX-512 row expand
// lives here, compiled for that ISA by its own target attribute (this file is otherwise baseline x86-64).
#include "CKernelHints.h"
#include <immintrin.h>

__attribute__((target("avx512f")))
void dg_expand_row_avx512(float *out, const float *src, const uint16_t *masks, const int32_t *offsets, int width) {
    // A plain 16-float load and the register form of the expand: the load form (vexpandps from memory) was slower
    // than a store per unit at r = 0.1 here. The load may run up to 15 floats past the row (the caller pads).
    int chunks = width / 16, c = 0;
    for (; c < chunks; c++) {
        _mm512_storeu_ps(out + 16 * c, _mm512_maskz_expand_ps((__mmask16)masks[c], _mm512_loadu_ps(src + offsets[c])));
    }
    int rest = width - 16 * chunks;
    if (rest > 0) {
        __m512 v = _mm512_maskz_expand_ps((__mmask16)masks[c], _mm512_loadu_ps(src + offsets[c]));
        _mm512_mask_storeu_ps(out + 16 * c, (__mmask16)((1u << rest) - 1), v);
    }
}
