"""Property-based: the Triton kernel against the reference on random shapes, strides, dtypes, t forms and seeds."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import TOLERANCE, assert_close, to_reference

import diffusion_kernels as dk
from diffusion_kernels import reference

SCHEDULE = dk.NoiseSchedule.cosine(T=100)
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


@st.composite
def layouts(draw):
    """A tensor view with random shape, a random permutation of its storage and random slicing."""
    ndim = draw(st.integers(1, 5))
    shape = draw(st.lists(st.integers(0, 7), min_size=ndim, max_size=ndim))
    steps = draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim))
    perm = draw(st.permutations(range(ndim)))
    base_shape = [shape[d] * steps[d] for d in perm]
    seed = draw(st.integers(0, 2**31 - 1))
    base = torch.randn(base_shape, generator=torch.Generator().manual_seed(seed))
    view = base.permute(*[perm.index(d) for d in range(ndim)])
    view = view[tuple(slice(None, None, s) for s in steps)]
    assert list(view.shape) == shape
    return view


@st.composite
def t_for(draw, shape):
    form = draw(st.integers(0, min(len(shape), 3)))
    if form == 0:
        return draw(st.integers(0, SCHEDULE.T - 1))
    prefix = tuple(shape[: form - 1]) if form > 1 else ()
    return torch.randint(0, SCHEDULE.T, prefix, generator=torch.Generator().manual_seed(draw(st.integers(0, 999))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=DTYPES)
def test_kernel_matches_reference_with_given_noise(device, data, dtype):
    x0 = data.draw(layouts()).to(device=device, dtype=dtype)
    noise = torch.randn(x0.shape).to(device=device, dtype=dtype)
    if x0.ndim >= 2 and data.draw(st.booleans()):  # a layout of its own: transposed storage
        noise = noise.transpose(0, -1).contiguous().transpose(0, -1)
    t = data.draw(t_for(tuple(x0.shape)))
    x_t = dk.q_sample(x0, t, SCHEDULE, noise, backend="triton")
    assert_close(x_t, reference.q_sample(to_reference(x0), t, SCHEDULE.alpha_bars, to_reference(noise)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=DTYPES, seed=st.integers(0, 2**64 - 1))
def test_kernel_matches_reference_with_drawn_noise(device, data, dtype, seed):
    x0 = data.draw(layouts()).to(device=device, dtype=dtype)
    t = data.draw(t_for(tuple(x0.shape)))
    fused = dk.q_sample(x0, t, SCHEDULE, seed=seed, backend="triton")
    ref = dk.q_sample(x0.cpu(), t, SCHEDULE, seed=seed, backend="reference")
    assert fused.shape == x0.shape and fused.dtype == dtype
    torch.testing.assert_close(to_reference(fused), to_reference(ref), **TOLERANCE[dtype])
