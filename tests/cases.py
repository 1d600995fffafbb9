"""Shared parametrization: dtypes, awkward shapes and layouts, t forms."""
import pytest
import torch

KERNEL_DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (name, shape, layout): odd sizes, one element, zero size, 1-D signals, images, video.
SHAPES = [
    ("one", (1,), "contiguous"),
    ("signal", (3, 101), "contiguous"),
    ("odd3d", (3, 7, 33), "contiguous"),
    ("row1023", (1, 1, 1023), "contiguous"),
    ("image", (2, 3, 8, 8), "contiguous"),
    ("video", (2, 3, 2, 5, 6), "contiguous"),
    ("empty", (0, 3, 4), "contiguous"),
    ("empty_inner", (2, 0, 5), "contiguous"),
    ("sliced", (4, 3, 9, 10), "sliced"),
    ("transposed", (3, 5, 6), "transposed"),
    ("channels_last", (2, 3, 5, 7), "channels_last"),
    ("channels_last_c4", (2, 4, 6, 4), "channels_last"),
    ("channels_last_3d", (2, 4, 3, 2, 2), "channels_last_3d"),
]

T_FORMS = ["int", "scalar_tensor", "per_sample", "per_frame"]


def make_x0(shape, layout, dtype, device, generator=None):
    """A tensor of ``shape`` in the given memory layout (its values standard normal)."""
    if layout == "sliced":
        big = torch.randn(shape[0], shape[1] + 1, shape[2], shape[3] * 2, generator=generator)
        x = big[:, 1:, :, ::2]
    elif layout == "transposed":
        x = torch.randn(tuple(reversed(shape)), generator=generator).permute(*reversed(range(len(shape))))
    elif layout == "channels_last":
        x = torch.randn(shape, generator=generator).to(memory_format=torch.channels_last)
    elif layout == "channels_last_3d":
        x = torch.randn(shape, generator=generator).to(memory_format=torch.channels_last_3d)
    else:
        x = torch.randn(shape, generator=generator)
    assert tuple(x.shape) == tuple(shape)
    return x.to(device=device, dtype=dtype)


def make_t(form, shape, T, generator=None):
    """``t`` in one of the accepted forms for x0 of ``shape``; None if the form does not apply."""
    if form == "int":
        return int(torch.randint(T, (), generator=generator))
    if form == "scalar_tensor":
        return torch.randint(T, (), generator=generator)
    if form == "per_sample":
        return torch.randint(T, shape[:1], generator=generator) if len(shape) >= 1 else None
    if form == "per_frame":
        return torch.randint(T, shape[:2], generator=generator) if len(shape) >= 2 else None
    raise ValueError(form)


def shape_params():
    return [pytest.param(shape, layout, id=name) for name, shape, layout in SHAPES]


def run_in_threads(work, count: int) -> list:
    """``work(k)`` on ``count`` threads at once; the exceptions they raised (a thread's own would not fail a
    test)."""
    import threading

    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def runnable_backends(device) -> list:
    """The backends a call on ``device`` can take here: the reference always, the kernels on CUDA or under
    Triton's interpreter, the compiled CPU loop on CPU where numba is installed."""
    from diffusion_kernels import dispatch, cpu_noise

    chosen = ["reference"]
    if device.type == "cuda" or dispatch.interpreter_active():
        chosen.append("triton")
    if device.type == "cpu" and cpu_noise.available():
        chosen.append("cpu")
    return chosen
