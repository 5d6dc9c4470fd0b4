"""nas-cntk: neural architecture search scored by exact CNTK kernel regression."""
from nas_cntk.architecture import Architecture, load, parse
from nas_cntk.engine import Kernels, kernel
from nas_cntk.errors import ArchitectureError, DataError, KernelError, NasCntkError

__all__ = ["Architecture", "ArchitectureError", "DataError", "KernelError", "Kernels", "NasCntkError", "kernel",
           "load", "parse"]
