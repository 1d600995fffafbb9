"""The diffusers drop-in against the real package: exactly the schedulers whose add_noise is the ᾱ
formula by timestep are fused, with stock's broadcasting and result dtype; the rest are refused;
a Fused* scheduler saves and loads as its stock class."""
import inspect
import json
import pickle

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test dependency (pip install -e .[test])")
from diffusion_kernels.integrations import diffusers as dk_diffusers  # noqa: E402


def _has_add_noise(name):
    try:
        cls = getattr(diffusers, name)
        return inspect.isclass(cls) and hasattr(cls, "add_noise")
    except ImportError:  # a placeholder for a scheduler whose own dependency (torchsde, ...) is missing
        return False


def _scheduler_classes():
    return [n for n in dir(diffusers) if n.endswith("Scheduler") and _has_add_noise(n)]


ACCEPTED = [n for n in dk_diffusers.FUSED_SCHEDULERS if hasattr(diffusers, n)]
REFUSED = [n for n in _scheduler_classes() if n not in dk_diffusers.FUSED_SCHEDULERS]


def _batch(device, dtype=torch.float32, batch=4):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, 3, 8, 8, generator=g).to(device=device, dtype=dtype)
    return x0, torch.randn(batch, 3, 8, 8, generator=g).to(device=device, dtype=dtype)


@pytest.mark.parametrize("name", ACCEPTED)
def test_every_fused_scheduler_equals_stock(device, name):
    stock, fused = getattr(diffusers, name)(), dk_diffusers.patch(getattr(diffusers, name)())
    x0, noise = _batch(device)
    t = torch.tensor([0, 3, 500, 999], device=device)
    torch.testing.assert_close(fused.add_noise(x0, noise, t), stock.add_noise(x0, noise, t), rtol=1.3e-6, atol=1e-6)
    if hasattr(stock, "get_velocity"):
        torch.testing.assert_close(fused.get_velocity(x0, noise, t), stock.get_velocity(x0, noise, t),
                                   rtol=1.3e-6, atol=1e-6)


@pytest.mark.parametrize("name", REFUSED)
def test_schedulers_with_another_add_noise_are_refused_by_name(name):
    cls = getattr(diffusers, name)
    scheduler = cls.__new__(cls)  # the check reads the class alone (some need constructor arguments)
    with pytest.raises(dk_diffusers.UnsupportedSchedulerError, match=name):
        dk_diffusers.patch(scheduler)
    with pytest.raises(dk_diffusers.UnsupportedSchedulerError, match=name):
        getattr(dk_diffusers, f"Fused{name}")
    assert not hasattr(dk_diffusers, f"Fused{name}")


def test_karras_sigmas_dpmsolver_is_refused():
    with pytest.raises(dk_diffusers.UnsupportedSchedulerError, match="DPMSolverMultistepScheduler"):
        dk_diffusers.patch(diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True))


def test_a_subclass_that_overrides_add_noise_is_not_taken_for_its_parent():
    class Custom(diffusers.DDPMScheduler):
        def add_noise(self, original_samples, noise, timesteps):
            return original_samples + noise

    with pytest.raises(dk_diffusers.UnsupportedSchedulerError, match="Custom"):
        dk_diffusers.patch(Custom())


@pytest.mark.parametrize("timesteps", [torch.tensor([500]), torch.tensor(500), [500], 500],
                         ids=["shape1", "scalar", "list", "int"])
def test_one_timestep_for_the_whole_batch(device, timesteps):
    stock, fused = diffusers.DDPMScheduler(), dk_diffusers.FusedDDPMScheduler()
    x0, noise = _batch(device)
    stock_t = timesteps if isinstance(timesteps, torch.Tensor) else torch.tensor(timesteps)
    torch.testing.assert_close(fused.add_noise(x0, noise, timesteps), stock.add_noise(x0, noise, stock_t),
                               rtol=1.3e-6, atol=1e-6)
    torch.testing.assert_close(fused.get_velocity(x0, noise, timesteps), stock.get_velocity(x0, noise, stock_t),
                               rtol=1.3e-6, atol=1e-6)


def test_a_batch_of_one_broadcast_against_many_timesteps(device):
    stock, fused = diffusers.DDPMScheduler(), dk_diffusers.patch(diffusers.DDPMScheduler())
    x0, noise = _batch(device, batch=1)
    t = torch.tensor([10, 400, 900], device=device)
    expected = stock.add_noise(x0, noise, t)
    assert expected.shape == (3, 3, 8, 8)
    torch.testing.assert_close(fused.add_noise(x0, noise, t), expected, rtol=1.3e-6, atol=1e-6)


def test_timesteps_that_fit_no_batch_are_refused(device):
    x0, noise = _batch(device)
    with pytest.raises(ValueError, match="do not broadcast"):
        dk_diffusers.FusedDDPMScheduler().add_noise(x0, noise, torch.tensor([1, 2, 3]))


def test_mixed_dtypes_give_stock_result_dtype(device):
    stock, fused = diffusers.DDPMScheduler(), dk_diffusers.FusedDDPMScheduler()
    x0, noise = _batch(device)
    t = torch.tensor([1, 2, 300, 900], device=device)
    got = fused.add_noise(x0.half(), noise, t)
    assert got.dtype == stock.add_noise(x0.half(), noise, t).dtype == torch.float32
    # stock rounds its coefficients to float16 first (ᾱ_1 becomes 1: no noise); ours are float32,
    # as stock's are for a float32 sample of the same values
    torch.testing.assert_close(got, stock.add_noise(x0.half().float(), noise, t), rtol=1.3e-6, atol=1e-6)


def test_fused_scheduler_saves_and_loads_as_stock(tmp_path):
    fused = dk_diffusers.FusedDDIMScheduler(beta_schedule="scaled_linear")
    fused.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "scheduler_config.json").read_text())["_class_name"] == "DDIMScheduler"
    loaded = diffusers.DDIMScheduler.from_pretrained(tmp_path)
    assert type(loaded) is diffusers.DDIMScheduler
    assert torch.equal(loaded.alphas_cumprod, fused.alphas_cumprod)
    again = dk_diffusers.FusedDDIMScheduler.from_pretrained(tmp_path)
    assert isinstance(again, dk_diffusers.FusedDDIMScheduler)
    assert dk_diffusers.FusedLCMScheduler().compatibles == diffusers.LCMScheduler().compatibles != []
    restored = pickle.loads(pickle.dumps(fused))
    assert type(restored) is type(fused) and repr(restored).startswith("FusedDDIMScheduler")


def test_pipeline_with_a_fused_scheduler_round_trips(tmp_path):
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 8), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=dk_diffusers.FusedDDPMScheduler())
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DDPMScheduler"]
    loaded = diffusers.DDPMPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler) is diffusers.DDPMScheduler
