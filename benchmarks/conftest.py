"""Benchmarks run on CUDA when present; otherwise through Triton's interpreter on CPU, where the
fused provider's times measure the interpreter, not the kernel (the suite still checks it runs)."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
