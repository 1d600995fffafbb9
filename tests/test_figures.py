"""`diffusion-kernels figures` and the walkthrough example, headless and offline."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_kernels import cli

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ["schedules.png", "noising_strip.png", "noising_two_rows.png", "batch_t0_vs_t500.png", "sine_1d.png",
            "x_T_statistics.png", "step_by_step.png", "closed_form_vs_steps.png"]


@pytest.fixture(scope="module")
def figure_dir(tmp_path_factory, device):
    out = tmp_path_factory.mktemp("figures")
    assert cli.main(["figures", "--out", str(out), "--device", str(device), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("name", EXPECTED)
def test_every_figure_is_a_real_picture(figure_dir, name):
    with Image.open(figure_dir / name) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert min(pixels.shape) > 150
    assert pixels.std() > 10  # not a blank canvas


def test_two_row_strip_has_no_empty_band_between_its_rows(figure_dir):
    with Image.open(figure_dir / "noising_two_rows.png") as im:
        pixels = np.asarray(im.convert("L"))
    blank = (pixels > 250).all(axis=1)  # rows of pure background
    longest = run = 0
    for row_is_blank in blank:
        run = run + 1 if row_is_blank else 0
        longest = max(longest, run)
    assert longest < 0.1 * pixels.shape[0], f"a blank band of {longest} of {pixels.shape[0]} pixel rows"


def test_user_images_folder(tmp_path, device):
    src = tmp_path / "mine"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    from diffusion_kernels import figures, images

    batch = images.load_images(src, size=32)
    assert batch.shape == (2, 3, 32, 48) and batch.min() >= -1 and batch.max() <= 1
    path = figures.noising_strip(tmp_path, batch[0], figures.NoiseSchedule.linear(), device=device,
                                 dtype=torch.float32, seed=0)
    assert path.exists()


def test_missing_image_path_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "figs"
    status = cli.main(["figures", "--out", str(out), "--images", str(tmp_path / "nope"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and not out.exists()  # checked before anything is written
    assert err.startswith(f"diffusion-kernels: error: argument --images: no such image file or folder: "
                          f"{tmp_path / 'nope'}") and "\n" not in err


def test_walkthrough_example_runs_headless(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "forward_diffusion_walkthrough.py"),
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "KS p =" in result.stdout
    assert {p.name for p in tmp_path.iterdir()} >= {"schedules.png", "batch_t0_vs_t500.png", "sine_1d.png"}


def test_make_all_with_a_missing_images_path_creates_no_folder(tmp_path):
    from diffusion_kernels import figures

    out = tmp_path / "never"
    with pytest.raises(FileNotFoundError, match="no such image file"):
        figures.make_all(out, images_path=tmp_path / "missing", progress=False)
    assert not out.exists()
