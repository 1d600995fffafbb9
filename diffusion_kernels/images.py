"""Real images without a network: the sets scikit-learn ships, or the user's own files.

Every loader returns a float32 tensor (N, C, H, W) scaled to [-1, 1], the range
diffusion models are trained in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _to_unit_range(images: np.ndarray, peak: float) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / peak * 2.0 - 1.0)


def digits(n: int | None = None) -> torch.Tensor:
    """scikit-learn's 8×8 handwritten digits, (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:n]
    return _to_unit_range(images, 16.0)[:, None]


def _resize(batch: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None:
        return batch
    h, w = batch.shape[-2:]
    scale = size / min(h, w)
    return F.interpolate(batch, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                         antialias=True, align_corners=False).clamp(-1, 1)


def photos(size: int | None = 128) -> torch.Tensor:
    """scikit-learn's two sample photographs (a temple, a flower), (2, 3, H, W), shorter side ``size``."""
    from sklearn.datasets import load_sample_images

    images = np.stack(load_sample_images().images).transpose(0, 3, 1, 2)
    return _resize(_to_unit_range(images, 255.0), size)


def load_images(path, size: int | None = 128) -> torch.Tensor:
    """An image file, or every image file of a folder, as (N, 3, H, W); resized to a common shape."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file or folder: {path}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    batch = []
    for file in files:
        try:
            with Image.open(file) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise ValueError(f"cannot read {file} as an image: {exc}") from None
        tensor = _to_unit_range(rgb.transpose(2, 0, 1)[None], 255.0)
        batch.append(_resize(tensor, size))
    shape = batch[0].shape[-2:]
    batch = [b if b.shape[-2:] == shape else F.interpolate(b, size=shape, mode="bilinear", antialias=True)
             for b in batch]
    return torch.cat(batch)
