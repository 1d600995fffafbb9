"""The forward process applied step by step in one fused kernel (``forward_trajectory``)."""
from .entry import forward_trajectory

__all__ = ["forward_trajectory"]
