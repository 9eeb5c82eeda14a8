// Everything is `static inline` in include/CKernelHints.h (inlined into the Swift callers); SwiftPM needs one source file.
#include "CKernelHints.h"
