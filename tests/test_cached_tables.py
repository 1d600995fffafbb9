"""Tables kept between calls never go stale, and a schedule first used under inference mode still
serves calls that need gradients."""
import pytest
import torch
from cases import run_in_threads

import diffusion_kernels as dk

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test dependency (pip install -e .[test])")
from diffusion_kernels.integrations import diffusers as dk_diffusers  # noqa: E402


def _expected(x0, t, alpha_bars, noise):
    return dk.q_sample(x0.double(), t, alpha_bars.double(), noise.double(), backend="reference").float()


@pytest.mark.parametrize("edit", ["in_place", "through_data", "through_a_view"])
def test_raw_alpha_bars_edited_after_use_are_seen(device, edit):
    ab = dk.NoiseSchedule.linear().alpha_bars.float()
    x0 = torch.randn(2, 8, device=device)
    noise = torch.randn_like(x0)
    t = torch.tensor([100, 700])
    dk.q_sample(x0, t, ab, noise)
    {"in_place": lambda: ab.mul_(0.5), "through_data": lambda: ab.data.mul_(0.5),
     "through_a_view": lambda: ab.detach()[600:].mul_(0.5)}[edit]()
    torch.testing.assert_close(dk.q_sample(x0, t, ab, noise), _expected(x0, t, ab, noise))


def test_raw_alpha_bars_edited_out_of_range_through_data_are_refused(device):
    ab = dk.NoiseSchedule.linear().alpha_bars
    x0 = torch.randn(2, 8, device=device)
    dk.q_sample(x0, 5, ab, seed=1)
    ab.data[5] = 1.5
    with pytest.raises(ValueError, match="got 1.5"):
        dk.q_sample(x0, 5, ab, seed=1)


@pytest.mark.parametrize("edit", ["in_place", "through_data"])
def test_patched_scheduler_sees_edits_of_its_alphas_cumprod(device, edit):
    stock = diffusers.DDPMScheduler()
    fused = dk_diffusers.patch(diffusers.DDPMScheduler())
    x0 = torch.randn(3, 2, 4, 4, device=device)
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 500, 900], device=device)
    fused.add_noise(x0, noise, t)
    for scheduler in (stock, fused):
        target = scheduler.alphas_cumprod if edit == "in_place" else scheduler.alphas_cumprod.data
        target[400:].mul_(0.3)
    torch.testing.assert_close(fused.add_noise(x0, noise, t), stock.add_noise(x0, noise, t), rtol=1.3e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["schedule", "raw_tensor", "patched_scheduler"])
def test_first_use_under_inference_mode_then_training(device, kind):
    x0 = torch.randn(4, 3, 2, 2, device=device)
    t = torch.tensor([1, 20, 300, 999], device=device)
    if kind == "schedule":
        schedule = dk.NoiseSchedule.cosine()

        def call(x):
            return dk.q_sample(x, t, schedule, seed=2)
    elif kind == "raw_tensor":
        with torch.inference_mode():
            ab = dk.NoiseSchedule.cosine().alpha_bars.float()

        def call(x):
            return dk.q_sample(x, t, ab, seed=2)
    else:
        scheduler = dk_diffusers.patch(diffusers.DDPMScheduler())
        noise = torch.randn_like(x0)

        def call(x):
            return scheduler.add_noise(x, noise, t)
    with torch.inference_mode():
        preview = call(x0)
    x = x0.clone().requires_grad_()
    out = call(x)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), preview)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_concurrent_calls_from_threads_give_the_single_threaded_results(device, schedule):
    """Launches and the table caches are safe to share between threads (under the interpreter the
    launches take turns, since it patches triton.language while a kernel runs)."""
    x0 = torch.randn(8, 3, 16, 16, device=device)
    t = torch.randint(0, 1000, (8,))
    ab = schedule.alpha_bars.float()
    expected = [dk.q_sample(x0, t, schedule, seed=k) for k in range(4)] + [dk.q_sample(x0, t, ab, seed=9)]
    results = {}

    def worker(k):
        for r in range(10):
            results[(k, r)] = (dk.q_sample(x0, t, schedule, seed=k), dk.q_sample(x0, t, ab, seed=9))

    assert run_in_threads(worker, 4) == []
    assert len(results) == 40
    for (k, _), (out, out_raw) in results.items():
        assert torch.equal(out, expected[k]) and torch.equal(out_raw, expected[4])
