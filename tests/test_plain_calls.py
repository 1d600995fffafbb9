"""A plain q_sample call (a training loop's: ε drawn, no other option) replays its kind's plan
(noising/plans.py): the same results as the full path, bit for bit, and what each call brings anew still
checked anew."""
import pytest
import torch
from cases import SHAPES, make_t, make_x0, runnable_backends

import diffusion_kernels as dk
from diffusion_kernels import seeding
from diffusion_kernels.noising import plans

BACKENDS = [b for b in runnable_backends(torch.device("cpu")) if b != "reference"]
PLAIN_SHAPES = [s for s in SHAPES if s[0] in ("one", "odd3d", "empty", "sliced", "channels_last")]


def _full_path(monkeypatch, call):
    """``call()`` with the plans out of the way: what the full path gives."""
    with monkeypatch.context() as m:
        m.setattr(plans, "replay", lambda *args: None)
        return call()


def _same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b)
    else:
        assert a == b
    return True


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name, shape, layout", PLAIN_SHAPES)
@pytest.mark.parametrize("t_form, return_noise", [("per_sample", True), ("per_frame", "seed"),
                                                  ("scalar_tensor", False)])
def test_a_plain_call_gives_the_full_paths_results_bit_for_bit(monkeypatch, backend, dtype, name, shape, layout,
                                                                t_form, return_noise, schedule):
    x0 = make_x0(shape, layout, dtype, "cpu")
    t = make_t(t_form, shape, schedule.T)
    if t is None:
        pytest.skip(f"a {t_form} t does not fit a {len(shape)}-D x0")
    for seed in (None, 2**64 - 3):
        torch.manual_seed(4)
        planned = [dk.q_sample(x0, t, schedule, seed=seed, return_noise=return_noise, backend=backend)
                   for _ in range(2)]  # the first call learns the kind's plan, the second replays it
        torch.manual_seed(4)
        full = [_full_path(monkeypatch, lambda: dk.q_sample(x0, t, schedule, seed=seed, return_noise=return_noise,
                                                            backend=backend)) for _ in range(2)]
        for a, b in zip(planned, full):
            _same(a, b)
        if return_noise == "seed":
            handle = planned[0][1]
            torch.testing.assert_close(handle.materialize(), full[0][1].materialize(), rtol=0, atol=0)
            assert handle.form.objective == "ddpm" and handle.form.index.shape == t.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_t_out_of_range_is_refused_on_every_call_of_a_kind(backend, schedule):
    x0 = torch.randn(2, 3, 4)
    dk.q_sample(x0, torch.tensor([0, 999]), schedule, backend=backend)
    for bad in ([0, 1000], [-1, 5]):
        with pytest.raises(ValueError, match=f"t contains {bad[1] if bad[1] == 1000 else bad[0]}, outside"):
            dk.q_sample(x0, torch.tensor(bad), schedule, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_autograd_and_transforms_take_the_full_path(backend, schedule):
    x0 = torch.randn(2, 3, 4)
    t = torch.tensor([5, 50])
    dk.q_sample(x0, t, schedule, seed=1, backend=backend)
    x = x0.clone().requires_grad_(True)
    out = dk.q_sample(x, t, schedule, seed=1, backend=backend)
    assert out.grad_fn is not None
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, schedule.coefficient_tables("cpu")[0][t].view(2, 1, 1).expand(2, 3, 4))
    with torch.no_grad():
        assert dk.q_sample(x, t, schedule, seed=1, backend=backend).grad_fn is None
    with pytest.raises(RuntimeError, match="inside torch.vmap"):
        torch.vmap(lambda row: dk.q_sample(row, t[0], schedule))(x0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_default_stream_is_read_on_every_call(monkeypatch, backend, schedule):
    """A process group started after a kind's first call changes its default stream (the rank)."""
    x0, t = torch.randn(2, 8), torch.tensor([1, 2])
    _, before = dk.q_sample(x0, t, schedule, seed=3, return_noise="seed", backend=backend)
    monkeypatch.setattr(seeding, "default_stream", lambda: 5)
    x_t, after = dk.q_sample(x0, t, schedule, seed=3, return_noise="seed", backend=backend)
    assert (before.stream, after.stream) == (0, 5)
    torch.testing.assert_close(x_t, dk.q_sample(x0, t, schedule, seed=3, stream=5, backend=backend), rtol=0, atol=0)


def test_a_strided_t_view_is_read_as_its_values(schedule):
    """A t that is a view with a stride (every other entry of a larger tensor) is packed before a kernel
    reads it as packed."""
    x0 = torch.randn(3, 16)
    big = torch.tensor([10, -1, 500, -1, 999, -1])
    for backend in BACKENDS:
        got = dk.q_sample(x0, big[::2], schedule, seed=9, backend=backend)
        want = dk.q_sample(x0, big[::2].clone(), schedule, seed=9, backend="reference")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_the_plans_are_bounded(monkeypatch, schedule):
    monkeypatch.setattr(plans, "_PLANS", {})
    for n in range(1, plans.LIMIT + 5):
        dk.q_sample(torch.randn(n), torch.tensor(0), schedule, seed=1)
    assert 0 < len(plans._PLANS) <= plans.LIMIT
