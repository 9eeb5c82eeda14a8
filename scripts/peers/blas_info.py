"""Which BLAS a numpy / PyTorch peer actually runs (recorded next to every peer number)."""
import ctypes
import glob
import os
import re


def openblas_corename(np):
    """The OpenBLAS kernel family numpy's BLAS runs (e.g. SkylakeX, Haswell, Zen), or 'unknown'."""
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown"


def numpy_blas(np):
    """'<name> <version>' of the BLAS numpy was built against, or 'unknown'."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return "%s %s" % (blas.get("name", "?"), blas.get("version", "?"))
    except Exception:
        return "unknown"


def torch_blas(torch):
    """BLAS, LAPACK and CPU capability lines from torch.__config__.show() (MKL on AMD CPUs runs slowly)."""
    facts = {}
    try:
        text = torch.__config__.show()
    except Exception:
        return facts
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        m = re.search(key + r"=([^,\s]+)", text)
        if m:
            facts[key] = m.group(1)
    m = re.search(r"CPU capability usage:\s*(\S+)", text)
    if m:
        facts["cpuCapability"] = m.group(1)
    return facts
