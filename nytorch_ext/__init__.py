"""nytorch_ext: whole PyTorch models as vectors, on fused multi-tensor kernels."""
from . import ops
from .ops import backend_info, is_compiled

__all__ = ["ops", "backend_info", "is_compiled"]
__version__ = "0.1.0"
