"""``cuda.is_available()`` and ``cuda.device_count()``, as in PyTorch."""

from .backend import cuda_device_count as device_count
from .backend import cuda_is_available as is_available

__all__ = ["device_count", "is_available"]
