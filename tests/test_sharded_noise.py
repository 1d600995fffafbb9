"""A call on a block of a global tensor (global_shape=, global_offset=) gives exactly that block of the call
on the whole tensor: noise, x_t, v, the loss and its gradient, timesteps and σ, on every backend."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffusion_kernels as dk
from cases import runnable_backends
from diffusion_kernels import sharding
from diffusion_kernels.tolerances import LOSS_ATOL, LOSS_RTOL

GLOBAL = (2, 3, 13, 3, 6)  # (B, C, F, H, W): 13 frames, which no rank count above 1 divides

# (name, the block as slices of GLOBAL): data parallel, context parallel along frames (uneven), a last-dim
# cut that splits Philox quads, two inner cuts, one element.
CUTS = {
    "batch": (slice(1, 2),),
    "frames": (slice(None), slice(None), slice(4, 11)),
    "dp_and_frames": (slice(1, 2), slice(None), slice(0, 7)),
    "last_dim": (slice(None), slice(None), slice(None), slice(None), slice(1, 6)),
    "two_inner": (slice(0, 2), slice(1, 3), slice(2, 9), slice(None), slice(3, 5)),
    "one_element": (slice(1, 2), slice(2, 3), slice(12, 13), slice(2, 3), slice(5, 6)),
}


def _index(cut):
    return tuple(cut) + (slice(None),) * (len(GLOBAL) - len(cut))


def _offset(index):
    return tuple(s.start or 0 for s in index)


def _local(x, index, layout):
    block = x[index]
    if layout == "contiguous":
        return block.contiguous()
    if layout == "channels_last_3d":
        return block.contiguous(memory_format=torch.channels_last_3d)
    # a view into a larger buffer, every dim strided
    big = torch.zeros(tuple(2 * n + 1 for n in block.shape), dtype=x.dtype)
    view = big[tuple(slice(1, 1 + 2 * n, 2) for n in block.shape)]
    return view.copy_(block)


def _backends():
    return runnable_backends(torch.device("cpu"))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("cut", list(CUTS), ids=list(CUTS))
@pytest.mark.parametrize("dtype, layout", [(torch.float32, "contiguous"), (torch.bfloat16, "contiguous"),
                                           (torch.float16, "channels_last_3d"), (torch.float32, "strided_view")],
                         ids=["float32", "bfloat16", "float16-channels_last_3d", "float32-strided_view"])
def test_a_block_draws_exactly_the_whole_calls_block(backend, dtype, cut, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(GLOBAL, generator=g).to(dtype)
    t = torch.randint(0, 1000, GLOBAL[:2], generator=g)
    schedule = dk.NoiseSchedule.cosine()
    index = _index(CUTS[cut])
    full = dk.q_sample(x, t, schedule, seed=123, return_noise=True, return_v=True, offset_noise=0.2, backend=backend)
    local = _local(x, index, layout)
    part = dk.q_sample(local, t[index[:2]], schedule, seed=123, return_noise=True, return_v=True, offset_noise=0.2,
                       backend=backend, global_shape=GLOBAL, global_offset=_offset(index))
    for whole, piece in zip(full, part):
        assert piece.shape == local.shape and piece.dtype == dtype
        assert torch.equal(piece, whole[index])


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("cut", ["frames", "two_inner"])
def test_every_noising_form_follows_global_positions(backend, cut):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(GLOBAL, generator=g)
    sigma = torch.rand(GLOBAL[:1], generator=g)
    t = torch.randint(0, 1000, GLOBAL[:1], generator=g)
    schedule = dk.NoiseSchedule.linear()
    index = _index(CUTS[cut])
    where = dict(global_shape=GLOBAL, global_offset=_offset(index))
    local = x[index].contiguous()
    calls = [
        (lambda y, **kw: dk.flow_match_sample(y, sigma[index[0]] if kw else sigma, seed=9, return_noise=True,
                                              return_v=True, backend=backend, **kw)),
        (lambda y, **kw: dk.edm_sample(y, 80 * (sigma[index[0]] if kw else sigma), seed=9, return_noise=True,
                                       backend=backend, **kw)),
        (lambda y, **kw: dk.forward_step(y, t[index[0]] if kw else t, schedule, seed=9, return_noise=True,
                                         backend=backend, **kw)),
        (lambda y, **kw: dk.q_sample(y, t[index[0]] if kw else t, schedule, seed=9, input_perturbation=0.1,
                                     return_noise=True, backend=backend, **kw)),
    ]
    for call in calls:
        for whole, piece in zip(call(x), call(local, **where)):
            assert torch.equal(piece, whole[index])


@pytest.mark.parametrize("backend", _backends())
def test_a_trajectory_of_a_block_is_the_block_of_the_trajectory(backend):
    x = torch.randn(2, 3, 7, 5, generator=torch.Generator().manual_seed(2))
    schedule = dk.NoiseSchedule.linear(T=20)
    index = (slice(None), slice(None), slice(2, 6), slice(1, 4))
    full, kept = dk.forward_trajectory(x, schedule, 5, seed=4, snapshots=[1, 3], backend=backend)
    part, kept_part = dk.forward_trajectory(x[index].contiguous(), schedule, 5, seed=4, snapshots=[1, 3],
                                            backend=backend, global_shape=x.shape, global_offset=(0, 0, 2, 1))
    assert torch.equal(part, full[index])
    assert all(torch.equal(kept_part[s], kept[s][index]) for s in (1, 3))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("target, weighting", [("eps", None), ("v", "min_snr"), ("x0", None)])
def test_the_loss_summed_over_shards_is_the_whole_batch_loss(backend, target, weighting):
    """Each rank's reduction="sum" over the global count of elements, added up: the single-device mean, and
    each shard's gradient the single-device gradient's block (to the loss tolerance: float32 sums added in
    another order)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 13, 6, generator=g)
    prediction = torch.randn(x.shape, generator=g)
    t = torch.randint(0, 1000, (4,), generator=g)
    schedule = dk.NoiseSchedule.linear()
    whole_pred = prediction.clone().requires_grad_()
    _, handle = dk.q_sample(x, t, schedule, seed=5, return_noise="seed", offset_noise=0.1, backend=backend)
    whole = dk.diffusion_loss(whole_pred, handle, target=target, x0=x, weighting=weighting, backend=backend)
    whole.backward()
    total = torch.zeros(())
    grad = torch.zeros_like(prediction)
    for rows, frames in ((slice(0, 2), slice(0, 7)), (slice(0, 2), slice(7, 13)), (slice(2, 4), slice(0, 5)),
                         (slice(2, 4), slice(5, 13))):
        index = (rows, slice(None), frames)
        x_local = x[index].contiguous()
        p_local = prediction[index].clone().requires_grad_()
        _, h = dk.q_sample(x_local, t[rows], schedule, seed=5, return_noise="seed", offset_noise=0.1,
                           backend=backend, global_shape=x.shape, global_offset=(rows.start, 0, frames.start, 0))
        part = dk.diffusion_loss(p_local, h, target=target, x0=x_local, weighting=weighting, reduction="sum",
                                 backend=backend) / x.numel()
        part.backward()
        total = total + part.detach()
        grad[index] = p_local.grad
    torch.testing.assert_close(total, whole.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
    torch.testing.assert_close(grad, whole_pred.grad, rtol=LOSS_RTOL, atol=LOSS_ATOL)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("scheme", ["uniform", "logit_normal", "mode"])
def test_samplers_draw_each_global_samples_value(backend, scheme):
    """t and σ of a block are those of its global samples; a context-parallel rank may pass the data's
    global shape and offset, whose leading dims are the samples'."""
    full_t = dk.sample_timesteps(10, 1000, scheme=scheme, seed=7, backend=backend)
    full_sigma = dk.sample_sigmas((10, 2), scheme=scheme, seed=7, backend=backend)
    for start, stop in ((0, 3), (3, 10), (9, 10)):
        t = dk.sample_timesteps(stop - start, 1000, scheme=scheme, seed=7, backend=backend,
                                global_shape=(10, 4, 13), global_offset=(start, 0, 6))
        sigma = dk.sample_sigmas((stop - start, 1), scheme=scheme, seed=7, backend=backend,
                                 global_shape=(10, 2), global_offset=(start, 1))
        assert torch.equal(t, full_t[start:stop])
        assert torch.equal(sigma, full_sigma[start:stop, 1:])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_blocks_of_random_tensors_draw_their_global_noise(data):
    """Property: any block (random cuts along any dims, strides, dtypes) on the cpu path or the reference."""
    ndim = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.integers(1, 7)) for _ in range(ndim))
    lo = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    hi = tuple(data.draw(st.integers(a + 1, n)) for a, n in zip(lo, shape))
    rows_ndim = data.draw(st.integers(0, ndim))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64]))
    backend = data.draw(st.sampled_from([b for b in _backends() if b != "triton"]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = torch.randint(0, 100, shape[:rows_ndim], generator=torch.Generator().manual_seed(1))
    schedule = dk.NoiseSchedule.linear(T=100)
    index = tuple(slice(a, b) for a, b in zip(lo, hi))
    full = dk.q_sample(x, t, schedule, seed=31, return_noise=True, offset_noise=0.5, backend=backend)
    part = dk.q_sample(x[index].transpose(0, -1).contiguous().transpose(0, -1), t[index[:rows_ndim]], schedule,
                       seed=31, return_noise=True, offset_noise=0.5, backend=backend, global_shape=shape,
                       global_offset=lo)
    assert torch.equal(part[0], full[0][index]) and torch.equal(part[1], full[1][index])


def test_units_are_the_runs_of_consecutive_global_positions():
    block = sharding.block_of((1, 3, 7, 3, 6), GLOBAL, (1, 0, 4, 0, 0))
    runs = sharding.units_of(block, 1)
    assert (runs.count, runs.length, runs.per_row) == (3, 7 * 3 * 6, 3)
    frame = 3 * 6
    assert runs.starts.tolist() == [(1 * 3 + c) * 13 * frame + 4 * frame for c in range(3)]
    assert runs.rows.tolist() == [1, 1, 1]
    positions = sharding.positions(block)
    assert positions.reshape(runs.count, runs.length)[:, 0].tolist() == runs.starts.tolist()


def test_the_whole_tensor_as_its_own_block_is_the_plain_call_on_stream_zero(monkeypatch):
    from diffusion_kernels import seeding

    assert sharding.block_of((3, 4), (3, 4), (0, 0)).whole
    assert sharding.partial(sharding.block_of((3, 4), (3, 4), (0, 0))) is None
    assert sharding.block_of((3, 4), None, None) is None
    monkeypatch.setattr(seeding, "default_stream", lambda: 3)  # as on rank 3 of a process group
    x = torch.zeros(3, 4)
    schedule = dk.NoiseSchedule.linear()
    plain = dk.q_sample(x, 0, schedule, seed=1, stream=0, return_noise=True, backend="reference")[1]
    whole = dk.q_sample(x, 0, schedule, seed=1, return_noise=True, backend="reference", global_shape=(3, 4),
                        global_offset=(0, 0))[1]
    assert torch.equal(whole, plain)
    t = dk.sample_timesteps(3, 100, seed=1, backend="reference", global_shape=(3, 4), global_offset=(0, 0))
    assert torch.equal(t, dk.sample_timesteps(3, 100, seed=1, stream=0, backend="reference"))


@pytest.mark.parametrize("global_shape, global_offset, message", [
    ((3, 4), None, "together"),
    ((3, 4, 5), (0, 0), "one entry per dim"),
    ((3, 4), (0, 1), "does not fit"),
    ((3, 4), (-1, 0), "does not fit"),
    ((3, 1), (0, 0), "does not fit"),
    (5, (0,), "sequence of ints"),
    ((3, 4.5), (0, 0), "global_shape"),
])
def test_a_block_that_does_not_fit_is_refused(global_shape, global_offset, message):
    with pytest.raises((ValueError, TypeError), match=message):
        dk.q_sample(torch.zeros(3, 4), 0, dk.NoiseSchedule.linear(), seed=0, backend="reference",
                    global_shape=global_shape, global_offset=global_offset)


def test_a_given_noise_with_a_global_position_is_refused():
    x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="nothing is drawn"):
        dk.q_sample(x, 0, dk.NoiseSchedule.linear(), torch.ones_like(x), backend="reference",
                    global_shape=(4, 4), global_offset=(2, 0))


def test_a_block_draws_on_stream_zero_by_default_whatever_the_rank(monkeypatch):
    from diffusion_kernels import seeding

    monkeypatch.setattr(seeding, "default_stream", lambda: 3)
    x = torch.zeros(4, 8)
    schedule = dk.NoiseSchedule.linear()
    _, whole = dk.q_sample(x, 0, schedule, seed=1, stream=0, return_noise=True, backend="reference")
    _, part = dk.q_sample(x[2:], 0, schedule, seed=1, return_noise=True, backend="reference",
                          global_shape=(4, 8), global_offset=(2, 0))
    assert torch.equal(part, whole[2:])
    _, ranked = dk.q_sample(x, 0, schedule, seed=1, return_noise=True, backend="reference")
    assert not torch.equal(ranked, whole)  # without a global position the rank still separates streams


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_blocks_quad_alignment_is_read_from_its_geometry(data):
    """Units.aligned (the kernels' vector-access tile) comes from ints, never a tensor read, and agrees with
    the run table it describes."""
    ndim = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.integers(1, 9)) for _ in range(ndim))
    lo = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    hi = tuple(data.draw(st.integers(a + 1, n)) for a, n in zip(lo, shape))
    block = sharding.block_of(tuple(b - a for a, b in zip(lo, hi)), shape, lo)
    runs = sharding.units_of(block, data.draw(st.integers(0, ndim)))
    assert runs.aligned == (runs.length % 4 == 0 and bool((runs.starts % 4 == 0).all()))


def test_a_shards_call_and_loss_compile_into_one_graph():
    if not dk.dispatch.interpreter_active():
        pytest.skip("the kernel path on CPU tensors needs Triton's interpreter (TRITON_INTERPRET=1)")
    torch._dynamo.reset()
    schedule = dk.NoiseSchedule.linear()
    where = dict(global_shape=(2, 3, 13, 4), global_offset=(0, 0, 6, 0))

    def step(x, prediction, t):
        x_t, handle = dk.q_sample(x, t, schedule, seed=3, return_noise="seed", backend="triton", **where)
        return x_t, dk.diffusion_loss(prediction, handle, target="v", x0=x, backend="triton")

    g = torch.Generator().manual_seed(0)
    x, prediction = torch.randn(2, 3, 7, 4, generator=g), torch.randn(2, 3, 7, 4, generator=g)
    t = torch.tensor([3, 500])
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, eager in zip(compiled(x, prediction, t), step(x, prediction, t)):
        assert torch.equal(got, eager)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("create_graph", [False, True])
def test_a_learned_schedules_gradient_adds_up_over_shards(backend, create_graph):
    """ᾱ's gradient through each shard's call (ε regenerated at its global positions in the backward) adds
    up to the whole call's, also when the backward is built from PyTorch operations (create_graph)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 13, 4, generator=g)
    upstream = torch.randn(x.shape, generator=g)
    t = torch.tensor([17, 600])
    base = dk.NoiseSchedule.linear().alpha_bars.float()

    def grad_of(block, offset):
        ab = base.clone().requires_grad_()
        out = dk.q_sample(x[block].contiguous(), t, ab, seed=8, offset_noise=0.2, backend=backend,
                          global_shape=x.shape, global_offset=offset)
        (grad,) = torch.autograd.grad((out * upstream[block]).sum(), ab, create_graph=create_graph)
        return grad.detach()

    whole = grad_of((slice(None),), (0, 0, 0, 0))
    parts = grad_of((slice(None), slice(None), slice(0, 6)), (0, 0, 0, 0)) + \
        grad_of((slice(None), slice(None), slice(6, 13)), (0, 0, 6, 0))
    torch.testing.assert_close(parts, whole, rtol=LOSS_RTOL, atol=LOSS_ATOL)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("offset, narrow", [((1, 2**31 - 32), True), ((0, 2**34 - 32), False)],
                         ids=["below_2_34", "across_quad_2_32"])
def test_a_block_of_a_huge_global_tensor_draws_its_global_positions(backend, offset, narrow):
    """Two runs of 64 in a global tensor of 4 rows of about 2**31 or 2**34: where every global position lies
    below 2**34 the kernels draw with 32-bit counters (sharding.Units.narrow); past it a run crosses quad
    2**32 and the next lies beyond, drawn with 64-bit counters. Either way each element is the stream's value
    at its position."""
    from diffusion_kernels import reference
    from tolerances import assert_noise_close

    width = offset[1] + 96
    global_shape = (4, width)
    x0 = torch.zeros(2, 64)
    t = torch.tensor([3, 900])
    runs = sharding.units_of(sharding.block_of(x0.shape, global_shape, offset), 1)
    assert runs.narrow == narrow
    _, eps = dk.q_sample(x0, t, dk.NoiseSchedule.linear(), seed=9, return_noise=True, backend=backend,
                         global_shape=global_shape, global_offset=offset)
    for row in range(2):
        start = (offset[0] + row) * width + offset[1]
        assert_noise_close(eps[row], reference.philox_normal(9, (64,), offset=start))
