"""NoiseSchedule: float64 tables that agree with diffusers' DDPMScheduler."""
import pytest
import torch

from diffusion_kernels import NoiseSchedule

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test dependency (pip install -e .[test])")

CASES = [
    ("linear", dict(beta_schedule="linear"), lambda: NoiseSchedule.linear()),
    ("linear_custom", dict(beta_schedule="linear", beta_start=2e-4, beta_end=0.03, num_train_timesteps=257),
     lambda: NoiseSchedule.linear(257, 2e-4, 0.03)),
    ("scaled_linear", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
     lambda: NoiseSchedule.scaled_linear()),
    ("cosine", dict(beta_schedule="squaredcos_cap_v2"), lambda: NoiseSchedule.cosine()),
    ("sigmoid", dict(beta_schedule="sigmoid"), lambda: NoiseSchedule.sigmoid()),
    ("linear_zero_snr", dict(beta_schedule="linear", rescale_betas_zero_snr=True),
     lambda: NoiseSchedule.linear().rescale_zero_terminal_snr()),
    ("scaled_linear_zero_snr", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    rescale_betas_zero_snr=True),
     lambda: NoiseSchedule.scaled_linear().rescale_zero_terminal_snr()),
]


@pytest.mark.parametrize("name,config,make", CASES, ids=[c[0] for c in CASES])
def test_tables_agree_with_diffusers(name, config, make):
    ours = make()
    theirs = diffusers.DDPMScheduler(**config)
    assert ours.T == len(theirs.betas)
    for attr, ref in (("betas", theirs.betas), ("alphas", theirs.alphas), ("alpha_bars", theirs.alphas_cumprod)):
        value = getattr(ours, attr)
        assert value.dtype == torch.float64
        torch.testing.assert_close(value.float(), ref.float(), rtol=2e-5, atol=1e-6, msg=f"{name}.{attr}")


def test_derived_tables():
    s = NoiseSchedule.cosine(T=50)
    ab = s.alpha_bars
    torch.testing.assert_close(s.alpha_bars_prev, torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]]))
    torch.testing.assert_close(s.snr, ab / (1 - ab))
    torch.testing.assert_close(torch.cumprod(s.alphas, 0), ab)
    assert (ab[1:] <= ab[:-1]).all() and len(s) == 50


def test_zero_terminal_snr_keeps_first_and_zeroes_last():
    base = NoiseSchedule.linear()
    z = base.rescale_zero_terminal_snr()
    assert z.alpha_bars[-1] == 0 and z.snr[-1] == 0
    torch.testing.assert_close(z.alpha_bars[0], base.alpha_bars[0])


def test_from_betas_and_from_alpha_bars_round_trip():
    s = NoiseSchedule.sigmoid(T=100)
    again = NoiseSchedule.from_alpha_bars(s.alpha_bars)
    torch.testing.assert_close(again.betas, s.betas, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(NoiseSchedule.from_betas(s.betas).alpha_bars, s.alpha_bars)


def test_coefficient_tables_are_float32_from_float64():
    s = NoiseSchedule.linear()
    a, b = s.coefficient_tables("cpu")
    assert a.dtype == b.dtype == torch.float32
    assert torch.equal(a, s.alpha_bars.sqrt().float()) and torch.equal(b, (1 - s.alpha_bars).sqrt().float())
    assert s.coefficient_tables("cpu")[0] is a


@pytest.mark.parametrize("bad,error", [
    (lambda: NoiseSchedule.linear(T=0), "T must be a positive int"),
    (lambda: NoiseSchedule.from_betas([0.1, 1.5]), r"betas must be in \[0, 1\]; betas\[1\] = 1.5"),
    (lambda: NoiseSchedule.from_alpha_bars([[0.9]]), "must be a non-empty 1-D"),
    (lambda: NoiseSchedule.from_alpha_bars([0.9, float("nan")]), "must be finite"),
    (lambda: NoiseSchedule.from_alpha_bars([1.2]), r"alpha_bars must be in \[0, 1\]; alpha_bars\[0\] = 1.2"),
])
def test_bad_schedules(bad, error):
    with pytest.raises(ValueError, match=error):
        bad()


def test_a_schedule_of_more_steps_than_32_bit_indexing_is_refused():
    """The kernels clamp t and index the tables in 32 bits (kernels/tiles.clamped_step): a table of 2**31
    entries is refused before anything is made of it (a meta tensor stands in for its 16 GB)."""
    from diffusion_kernels.schedules import MAX_STEPS, coefficient_tables

    with pytest.raises(ValueError, match="at most 2147483647 steps"):
        coefficient_tables(torch.empty(MAX_STEPS + 1, dtype=torch.float64, device="meta"), "cpu")
    a, b = coefficient_tables(torch.tensor([0.9, 0.5], dtype=torch.float64), "cpu")
    assert a.dtype == b.dtype == torch.float32 and a.numel() == 2


def test_a_table_the_kernels_cannot_index_is_refused_where_they_are_launched():
    """Tables not made by coefficient_tables (a codebase's own sqrt(ᾱ) buffers) meet the same limit where the
    noising kernels take their length (a meta tensor stands in for 8 GB of float32)."""
    from diffusion_kernels.noising import launcher
    from diffusion_kernels.schedules import MAX_STEPS

    table = torch.empty(MAX_STEPS + 1, dtype=torch.float32, device="meta")
    with pytest.raises(ValueError, match="at most 2147483647 steps"):
        launcher.plain_settings(torch.zeros(2, 8), torch.tensor([0, 1]), table, table, False, False)
