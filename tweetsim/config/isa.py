"""The same bytes on any x86-64 CPU with AVX2: hold every library that picks its kernels at run time,
and has a switch for it, to its AVX2 kernels (docs/reproducibility.md).

Wider kernels (AVX-512, AMX) add floats in another order, so a stage's outputs would move with the
CPU. Each switch is read once, when its library starts (numpy and OpenBLAS at `import numpy`), so
`hold()` must run before any of them loads: the stages and the `tweetsim` command import
tweetsim.pipeline.stage first, which calls it. A variable already in the environment is left as it is
(MKL_CBWR=AUTO etc. give the native kernels back). ONNX Runtime has no such switch (docs/reproducibility.md).
"""

import os
import sys

AVX2_CAPS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (PyTorch's mkldnn ops; no native bfloat16 under it)
    "DNNL_MAX_CPU_ISA": "AVX2",  # the same switch, older oneDNN name
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: the AVX2 code path (PyTorch's BLAS)
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorised kernels (reductions, softmax, layer norm)
    "OPENBLAS_CORETYPE": "Haswell",  # OpenBLAS under numpy, scipy and scikit-learn: the AVX2 kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's AVX-512 loops (sorts, ufuncs)
}
# libraries that read their switch when they load: held too late once one of them is in the process
LOAD_TIME = {"numpy": ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}

_late: list[str] = []


def hold(environ=os.environ, modules=sys.modules) -> list[str]:
    """Set each switch not already in `environ`; return (and remember) the libraries already loaded
    whose switch was set here, too late to apply."""
    late = sorted(lib for lib, keys in LOAD_TIME.items() if lib in modules and any(k not in environ for k in keys))
    for key, value in AVX2_CAPS.items():
        environ.setdefault(key, value)
    _late[:] = late
    return late


def late() -> list[str]:
    """Libraries that loaded before hold() set their switch (a stage must import tweetsim.pipeline.stage first)."""
    return list(_late)
