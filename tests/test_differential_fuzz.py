"""Differential fuzzing: every public noising call, kernel against reference, on inputs drawn for
their awkwardness: stride-0 (expanded) dims, views at an offset into larger buffers, permuted and
stepped storage, 0-size dims, t and σ that are themselves strided views; and the gradients."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import TOLERANCE, to_reference

import diffusion_kernels as dk

SCHEDULE = dk.NoiseSchedule.cosine(T=100)
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])
FORMS = st.sampled_from(["q_sample", "q_sample_v", "get_velocity", "flow_match", "edm", "forward_step"])


@st.composite
def awkward_views(draw, dtype):
    """A view of ``shape`` into a larger buffer: permuted storage, steps, an offset, expanded dims."""
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim))
    expanded = [draw(st.booleans()) and shape[d] > 0 for d in range(ndim)]
    steps = draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim))
    offsets = draw(st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim))
    perm = draw(st.permutations(range(ndim)))
    base_sizes = [1 if expanded[d] else shape[d] * steps[d] + offsets[d] for d in range(ndim)]
    seed = draw(st.integers(0, 2**31 - 1))
    base = torch.randn([base_sizes[d] for d in perm], generator=torch.Generator().manual_seed(seed)).to(dtype)
    view = base.permute(*[perm.index(d) for d in range(ndim)])
    view = view[tuple(slice(0, 1) if expanded[d] else slice(offsets[d], None, steps[d]) for d in range(ndim))]
    view = view.expand(shape)
    assert list(view.shape) == shape
    return view


@st.composite
def rows_for(draw, shape, high, floating=False):
    """A per-row value (t or σ) of shape () or a leading prefix of ``shape``, possibly strided."""
    k = draw(st.integers(0, min(len(shape), 2)))
    prefix = tuple(shape[:k])
    g = torch.Generator().manual_seed(draw(st.integers(0, 999)))
    make = (lambda size: torch.rand(size, generator=g, dtype=torch.float64) * high) if floating else \
        (lambda size: torch.randint(0, high, size, generator=g))
    if k and draw(st.booleans()):  # every second entry of a longer buffer
        return make((*prefix[:-1], prefix[-1] * 2))[..., ::2]
    if k and draw(st.booleans()):  # one value expanded over the rows
        return make(()).expand(prefix)
    return make(prefix)


def _call(form, x0, rows, noise, backend):
    if form == "q_sample":
        return dk.q_sample(x0, rows, SCHEDULE, noise, backend=backend)
    if form == "q_sample_v":
        return dk.q_sample(x0, rows, SCHEDULE, noise, return_v=True, backend=backend)[1]
    if form == "get_velocity":
        return dk.get_velocity(x0, noise, rows, SCHEDULE, backend=backend)
    if form == "flow_match":
        return dk.flow_match_sample(x0, rows, noise, backend=backend)
    if form == "edm":
        return dk.edm_sample(x0, rows, noise, backend=backend)
    return dk.forward_step(x0, rows, SCHEDULE, noise, backend=backend)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=DTYPES, form=FORMS)
def test_every_noising_call_matches_the_reference(device, data, dtype, form):
    x0 = data.draw(awkward_views(dtype)).to(device)
    noise = data.draw(awkward_views(dtype)) if x0.numel() and data.draw(st.booleans()) else None
    noise = torch.randn(x0.shape, dtype=dtype) if noise is None or noise.shape != x0.shape else noise
    noise = noise.to(device)
    sigma_form = form in ("flow_match", "edm")
    rows = data.draw(rows_for(tuple(x0.shape), 1 if sigma_form else SCHEDULE.T, floating=sigma_form))
    fused = _call(form, x0, rows, noise, "triton")
    expected = _call(form, to_reference(x0), rows, to_reference(noise), "reference")
    assert fused.shape == x0.shape and fused.dtype == dtype
    torch.testing.assert_close(to_reference(fused), expected, equal_nan=True, **TOLERANCE[dtype])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**64 - 1))
def test_gradients_match_the_reference(device, data, seed):
    x_view = data.draw(awkward_views(torch.float32))
    rows = data.draw(rows_for(tuple(x_view.shape), SCHEDULE.T))
    learned = data.draw(st.booleans())
    grads = []
    for backend, dtype in (("triton", torch.float32), ("reference", torch.float64)):
        x0 = x_view.detach().to(device=device, dtype=dtype).requires_grad_()
        ab = SCHEDULE.alpha_bars.to(device=device, dtype=dtype).requires_grad_(learned)
        x_t, v = dk.q_sample(x0, rows, ab, seed=seed, return_v=True, backend=backend)
        upstream = torch.ones_like(x_t) if x_t.numel() == 0 else torch.linspace(-1, 1, x_t.numel(), dtype=dtype,
                                                                                 device=device).reshape(x_t.shape)
        inputs = (x0, ab) if learned else (x0,)
        grads.append(torch.autograd.grad((x_t * upstream).sum() + v.sum(), inputs, allow_unused=True))
    for fused, ref in zip(*grads):
        torch.testing.assert_close(to_reference(fused), to_reference(ref), rtol=1e-4, atol=1e-4)
