"""diffusion_loss: every target, weighting and reduction on the kernels against the float64 reference, with
gradients to the prediction, x0 and a weighting tensor; gradcheck of the reference; bad input refused."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import objectives

from cases import KERNEL_DTYPES, make_x0
from tolerances import assert_grad_close, assert_loss_close, to_reference

# (name, shape, layout, t's shape): per-sample and per-frame t, one t, odd rows, views, channels-last.
LOSS_SHAPES = [
    ("image", (3, 4, 6, 5), "contiguous", (3,)),
    ("one_t", (2, 3, 5, 7), "contiguous", ()),
    ("per_frame", (2, 3, 4, 5), "contiguous", (2, 3)),
    ("odd_rows", (3, 7, 11), "contiguous", (3,)),
    ("one_element", (1,), "contiguous", (1,)),
    ("sliced", (4, 3, 9, 10), "sliced", (4,)),
    ("channels_last_c4", (2, 4, 6, 4), "channels_last", (2,)),
    ("channels_last_one_t", (2, 4, 6, 4), "channels_last", ()),
]
# (target, weighting) pairs each noising form trains with.
DDPM_OBJECTIVES = [("eps", None), ("eps", "min_snr"), ("v", None), ("v", "min_snr"), ("x0", "min_snr"),
                   ("eps", "tensor")]
FLOW_OBJECTIVES = [("flow", None), ("flow", "sigma_sqrt"), ("flow", "cosmap"), ("x0", "cosmap"), ("v", "tensor"),
                   ("eps", None)]


def _t_of(shape, rows_shape, T=1000):
    return torch.randint(T, rows_shape) if rows_shape else torch.tensor(617)


def _weighting(name, rows_shape, device):
    if name != "tensor":
        return name
    return (torch.rand(rows_shape, dtype=torch.float64) + 0.5).to(device).requires_grad_(True)


def _check_against_reference(prediction, handle, x0, target, weighting, reduction, dtype, backend="triton"):
    pred = prediction.detach().requires_grad_(True)
    x0_in = x0.detach().requires_grad_(target != "eps")
    loss = dk.diffusion_loss(pred, handle, target=target, x0=x0_in, weighting=weighting, reduction=reduction,
                             backend=backend)
    pred64 = to_reference(pred).requires_grad_(True)
    x0_64 = to_reference(x0_in).requires_grad_(target != "eps")
    w64 = weighting
    if isinstance(weighting, torch.Tensor):
        w64 = to_reference(weighting).requires_grad_(weighting.requires_grad)
    ref = dk.diffusion_loss(pred64, _on_cpu(handle), target=target, x0=x0_64, weighting=w64, reduction=reduction,
                            backend="reference")
    assert loss.dtype == torch.float32 and loss.shape == ref.shape
    assert_loss_close(loss, ref)
    upstream = torch.rand(loss.shape, dtype=torch.float64) + 0.5
    learned = isinstance(weighting, torch.Tensor) and weighting.requires_grad
    inputs = [pred] + ([x0_in] if target != "eps" else []) + ([weighting] if learned else [])
    inputs64 = [pred64] + ([x0_64] if target != "eps" else []) + ([w64] if learned else [])
    grads = torch.autograd.grad(loss, inputs, upstream.to(loss.device, loss.dtype))
    grads64 = torch.autograd.grad(ref, inputs64, upstream)
    for grad, grad64, given in zip(grads, grads64, inputs):
        assert grad.shape == given.shape and grad.dtype == given.dtype
        assert_grad_close(grad, grad64, dtype if given.dtype != torch.float64 else torch.float32)


def _on_cpu(handle):
    """The same handle for the reference on CPU tensors (its ε is a function of the seed alone)."""
    import dataclasses

    seed = handle.seed if not isinstance(handle.seed, torch.Tensor) else int(handle.seed.item())
    return dataclasses.replace(handle, seed=seed, device=torch.device("cpu"))


def _cases(shapes, objectives_, dtypes, reductions):
    """(dtype, shape, layout, rows_shape, target, weighting, reduction) for every shape × objective in
    every dtype, the reductions taken in turn (each pair of shape and objective meets one of them)."""
    out = []
    for dtype in dtypes:
        for i, (name, shape, layout, rows_shape) in enumerate(shapes):
            for j, (target, weighting) in enumerate(objectives_):
                reduction = reductions[(i + j) % len(reductions)]
                out.append(pytest.param(dtype, shape, layout, rows_shape, target, weighting, reduction,
                                        id=f"{name}-{target}-{weighting}-{reduction}-{str(dtype)[6:]}"))
    return out


# Every shape in float32; the 2-byte dtypes on a contiguous, a strided and a channels-last batch;
# every reduction of every objective on one batch.
_TWO_BYTE = [LOSS_SHAPES[0], LOSS_SHAPES[5], LOSS_SHAPES[6]]
DDPM_CASES = (_cases(LOSS_SHAPES, DDPM_OBJECTIVES, [torch.float32], objectives.REDUCTIONS)
              + _cases(_TWO_BYTE, DDPM_OBJECTIVES, [torch.float16, torch.bfloat16], objectives.REDUCTIONS)
              + [c for r in objectives.REDUCTIONS for c in _cases(LOSS_SHAPES[:1], DDPM_OBJECTIVES, [torch.float32],
                                                                  [r])])
FLOW_SHAPES = LOSS_SHAPES[:4] + LOSS_SHAPES[5:7]
FLOW_CASES = (_cases(FLOW_SHAPES, FLOW_OBJECTIVES, [torch.float32], objectives.REDUCTIONS)
              + _cases(_TWO_BYTE[1:], FLOW_OBJECTIVES, [torch.bfloat16], objectives.REDUCTIONS))


@pytest.mark.parametrize("dtype, shape, layout, rows_shape, target, weighting, reduction", DDPM_CASES)
def test_ddpm_loss_matches_the_reference_with_gradients(device, schedule, dtype, shape, layout, rows_shape, target,
                                                        weighting, reduction):
    torch.manual_seed(0)
    x0 = make_x0(shape, layout, dtype, device)
    t = _t_of(shape, rows_shape)
    _, handle = dk.q_sample(x0, t, schedule, seed=11, return_noise="seed", offset_noise=0.1, backend="triton")
    prediction = make_x0(shape, layout, dtype, device)
    _check_against_reference(prediction, handle, x0, target, _weighting(weighting, rows_shape, device), reduction,
                             dtype)


@pytest.mark.parametrize("dtype, shape, layout, rows_shape, target, weighting, reduction", FLOW_CASES)
def test_flow_loss_matches_the_reference_with_gradients(device, dtype, shape, layout, rows_shape, target, weighting,
                                                        reduction):
    torch.manual_seed(1)
    x0 = make_x0(shape, layout, dtype, device)
    sigma = torch.rand(rows_shape, dtype=torch.float64) * 0.98 + 0.01
    _, handle = dk.flow_match_sample(x0, sigma.to(device), seed=5, return_noise="seed", backend="triton")
    prediction = make_x0(shape, "contiguous", dtype, device)  # a layout unlike x0's: the strided loss reads both
    _check_against_reference(prediction, handle, x0, target, _weighting(weighting, rows_shape, device), reduction,
                             dtype)


CPU_SHAPES = [LOSS_SHAPES[0], LOSS_SHAPES[3], LOSS_SHAPES[5], LOSS_SHAPES[6],
              ("threads_odd_rows", (3, 23_457), "contiguous", (3,))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape, layout, rows_shape", [pytest.param(*c[1:], id=c[0]) for c in CPU_SHAPES])
@pytest.mark.parametrize("target, weighting", [("eps", None), ("v", "min_snr"), ("x0", "tensor")],
                         ids=lambda v: str(v))
def test_the_cpu_loop_loss_matches_the_reference(schedule, dtype, shape, layout, rows_shape, target, weighting):
    """The compiled CPU loop's passes, on one thread and (above cpu_noise.SERIAL_BELOW) many, rows whose
    length is not a multiple of 4 included."""
    if not dk.dispatch.cpu_available():
        pytest.skip("the cpu backend needs numba (the [cpu] extra)")
    torch.manual_seed(2)
    x0 = make_x0(shape, layout, dtype, "cpu")
    _, handle = dk.q_sample(x0, _t_of(shape, rows_shape), schedule, seed=13, return_noise="seed", offset_noise=0.1,
                            backend="cpu")
    prediction = make_x0(shape, layout, dtype, "cpu")
    for reduction in objectives.REDUCTIONS:
        _check_against_reference(prediction, handle, x0, target, _weighting(weighting, rows_shape, "cpu"),
                                 reduction, dtype, backend="cpu")


def test_the_cpu_loop_loss_keeps_neither_eps_nor_the_target(schedule):
    if not dk.dispatch.cpu_available():
        pytest.skip("the cpu backend needs numba (the [cpu] extra)")
    x0 = torch.randn(4, 3, 16, 16)
    _, handle = dk.q_sample(x0, torch.tensor([1, 10, 100, 999]), schedule, seed=1, return_noise="seed",
                            backend="cpu")
    pred = torch.randn_like(x0, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = dk.diffusion_loss(pred, handle, target="v", x0=x0, weighting="min_snr", backend="cpu")
    big = [t for t in saved if t.numel() >= x0.numel()]
    assert all(t.data_ptr() in (pred.data_ptr(), x0.data_ptr()) for t in big), [t.shape for t in big]
    loss.backward()


def test_edm_x0_loss_with_its_weighting(device):
    x0 = torch.randn(4, 3, 8, 8, device=device)
    sigma = torch.tensor([0.02, 0.5, 3.0, 40.0])
    _, handle = dk.edm_sample(x0, sigma.to(device), seed=2, return_noise="seed", backend="triton")
    sigma_data = 0.5
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2  # EDM's λ(σ)
    pred = torch.randn_like(x0)
    _check_against_reference(pred, handle, x0, "x0", weight.to(device), "mean", torch.float32)
    _check_against_reference(pred, handle, x0, "eps", None, "none", torch.float32)


@pytest.mark.parametrize("target", ["eps", "v", "x0"])
@pytest.mark.parametrize("reduction", objectives.REDUCTIONS)
def test_reference_loss_passes_gradcheck(schedule, target, reduction):
    x0 = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    _, handle = dk.q_sample(x0.detach(), torch.tensor([3, 400, 999]), schedule, seed=4, return_noise="seed",
                            offset_noise=0.2, backend="reference")
    pred = torch.randn_like(x0, requires_grad=True)
    weights = torch.rand(3, 1, 1, dtype=torch.float64, requires_grad=True)

    def loss(p, x, w):
        return dk.diffusion_loss(p, handle, target=target, x0=x, weighting=w, reduction=reduction,
                                 backend="reference")

    assert torch.autograd.gradcheck(loss, (pred, x0, weights))
    assert torch.autograd.gradcheck(lambda p, x: dk.diffusion_loss(p, handle, target=target, x0=x,
                                                                   weighting="min_snr", reduction=reduction,
                                                                   backend="reference"), (pred, x0))


def test_loss_is_the_same_on_every_run(device, schedule):
    x0 = torch.randn(8, 4, 16, 16, device=device)
    _, handle = dk.q_sample(x0, torch.arange(8) * 120, schedule, seed=9, return_noise="seed", backend="triton")
    pred = torch.randn_like(x0, requires_grad=True)
    runs = [dk.diffusion_loss(pred, handle, target="v", x0=x0, weighting="min_snr", backend="triton")
            for _ in range(3)]
    grads = [torch.autograd.grad(loss, pred)[0] for loss in runs]
    assert all(torch.equal(runs[0], r) for r in runs) and all(torch.equal(grads[0], g) for g in grads)


def test_noise_mse_is_the_unweighted_eps_loss(device, schedule):
    x0 = torch.randn(3, 5, 7, device=device)
    _, handle = dk.q_sample(x0, torch.tensor([1, 50, 900]), schedule, seed=3, return_noise="seed", backend="triton")
    pred = torch.randn_like(x0)
    for reduction in ("mean", "sum"):
        assert torch.equal(dk.noise_mse(pred, handle, reduction=reduction, backend="triton"),
                           dk.diffusion_loss(pred, handle, reduction=reduction, backend="triton"))


def test_min_snr_eps_weight_is_one_where_the_snr_is_zero(device):
    schedule = dk.NoiseSchedule.linear().rescale_zero_terminal_snr()
    x0 = torch.randn(2, 6, device=device)
    t = torch.tensor([999, 999])
    _, handle = dk.q_sample(x0, t, schedule, seed=1, return_noise="seed", backend="triton")
    pred = torch.randn_like(x0)
    weighted = dk.diffusion_loss(pred, handle, weighting="min_snr", reduction="none", backend="triton")
    plain = dk.diffusion_loss(pred, handle, reduction="none", backend="triton")
    assert torch.isfinite(weighted).all()
    torch.testing.assert_close(weighted, plain)


def test_empty_batches_give_an_empty_or_zero_loss(device, schedule):
    x0 = torch.zeros(0, 3, 4, device=device)
    _, handle = dk.q_sample(x0, torch.zeros(0, dtype=torch.long), schedule, seed=1, return_noise="seed",
                            backend="triton")
    pred = torch.zeros_like(x0, requires_grad=True)
    assert dk.diffusion_loss(pred, handle, reduction="none", backend="triton").shape == (0,)
    loss = dk.diffusion_loss(pred, handle, target="v", x0=x0, weighting="min_snr", backend="triton")
    assert float(loss.detach()) == 0.0
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad.shape == pred.shape


def test_bad_objectives_are_refused_with_the_reason(device, schedule):
    x0 = torch.randn(2, 3, 4, device=device)
    _, ddpm = dk.q_sample(x0, torch.tensor([1, 2]), schedule, seed=1, return_noise="seed", backend="triton")
    _, flow = dk.flow_match_sample(x0, torch.tensor([0.2, 0.7]).to(device), seed=1, return_noise="seed",
                                   backend="triton")
    _, step = dk.forward_step(x0, torch.tensor([1, 2]), schedule, seed=1, return_noise="seed", backend="triton")
    cases = [
        (dict(noised=ddpm, target="flow", x0=x0), ValueError, "flow_match_sample handle"),
        (dict(noised=flow, weighting="min_snr"), ValueError, "DDPM noising"),
        (dict(noised=ddpm, weighting="cosmap"), ValueError, "flow-matching weighting"),
        (dict(noised=step, target="v", x0=x0), ValueError, "v-target"),
        (dict(noised=ddpm, target="v"), ValueError, "reads x0"),
        (dict(noised=ddpm, target="v", x0=x0[:1]), ValueError, "does not match"),
        (dict(noised=ddpm, target="velocity"), ValueError, "target must be one of"),
        (dict(noised=ddpm, reduction="avg"), ValueError, "reduction must be one of"),
        (dict(noised=ddpm, weighting="snr"), ValueError, "weighting must be None"),
        (dict(noised=ddpm, weighting=3.0), TypeError, "weighting must be None"),
        (dict(noised=ddpm, weighting=torch.ones(3)), ValueError, "one weight per sample"),
        (dict(noised=ddpm, weighting=torch.ones(2, dtype=torch.long)), TypeError, "floating point"),
        (dict(noised=ddpm, weighting="min_snr", snr_gamma=0.0), ValueError, "snr_gamma"),
        (dict(noised=torch.zeros_like(x0)), TypeError, "NoiseHandle"),
    ]
    for kwargs, error, message in cases:
        noised = kwargs.pop("noised")
        with pytest.raises(error, match=message):
            dk.diffusion_loss(torch.zeros_like(x0), noised, **kwargs)


def test_a_loss_that_reads_a_learned_schedule_is_refused(device):
    """The v coefficients and min-SNR weights are constants to the loss: with a schedule that requires grad
    its gradient through them would be missing, so the call is refused; ε and x0 targets do not read it."""
    learned = dk.NoiseSchedule.linear().alpha_bars.clone().requires_grad_(True)
    x0 = torch.randn(2, 3, 4, device=device)
    _, handle = dk.q_sample(x0, torch.tensor([3, 700]), learned, seed=1, return_noise="seed", backend="triton")
    pred = torch.randn_like(x0)
    for kwargs in (dict(target="v", x0=x0), dict(weighting="min_snr")):
        with pytest.raises(NotImplementedError, match="requires grad"):
            dk.diffusion_loss(pred, handle, backend="triton", **kwargs)
    assert torch.isfinite(dk.diffusion_loss(pred, handle, target="x0", x0=x0, backend="triton"))


def test_a_float64_loss_keeps_float64_without_grad_and_a_float32_one_any_default_dtype(schedule):
    """The host reduction of float32 sums is float32 whatever torch's default dtype; float64 sums (the
    reference's, for a float64 prediction) keep float64 under no_grad too."""
    x0 = torch.randn(3, 2, 5, dtype=torch.float64)
    _, handle = dk.q_sample(x0, torch.tensor([1, 50, 900]), schedule, seed=7, return_noise="seed")
    pred = torch.randn(3, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        loss = dk.diffusion_loss(pred, handle)
    tracked = dk.diffusion_loss(pred.clone().requires_grad_(True), handle)  # the tensor operations' reduction
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, tracked.detach(), rtol=0, atol=0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _, h32 = dk.q_sample(x0.float(), torch.tensor([1, 50, 900]), schedule, seed=7, return_noise="seed")
        with torch.no_grad():
            assert dk.diffusion_loss(pred.float(), h32).dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)
