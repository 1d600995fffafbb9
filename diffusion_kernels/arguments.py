"""The command line's parser: every argument's type, range and choices, checked without importing torch."""
from __future__ import annotations

import argparse
import difflib
import os
import re

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
VALIDATE_T = 1000  # timesteps of the schedule validate uses (NoiseSchedule.linear())
SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
NUMEL_RANGE = (1024, 1 << 31)  # validate: enough elements for its statistics; below int32 indexing's end
SIZE_RANGE = (4, 1 << 31)  # bench: at least one element per sample of its batch of 4
SEED_RANGE = (0, (1 << 64) - 1)


class UserError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line: the mistake and where to look."""

    def error(self, message):
        raise UserError(f"{message} (see '{self.prog} --help')")


def _count(text: str) -> int:
    """An element count: 65536, 64K, 1M, 16M (binary: 1M = 2**20)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"expected a count such as 65536, 64K or 16M, got {text!r}")
    return int(match.group(1)) * SUFFIXES.get(match.group(2).upper(), 1)


def _bounded(flag: str, lo: int, hi: int, parse=int):
    """An argparse type: ``parse``, then range-checked, naming the flag in its error."""
    def convert(text: str) -> int:
        try:
            value = parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc) if parse is _count else f"expected an integer, got {text!r}")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside [{lo}, {hi}]")
        return value

    convert.__name__ = flag  # argparse names the type in its message
    return convert


class _ListAction(argparse.Action):
    """A list option: comma-separated, repeatable, or both (``--dtype fp32,bf16`` = ``--dtype fp32 --dtype bf16``).

    ``self.type`` converts one item and ``self.choices`` (kept aside, so argparse
    does not test the unsplit text against them) limits the items.
    """

    def __init__(self, *args, item_choices=None, item=str, **kwargs):
        super().__init__(*args, nargs="+", **kwargs)
        self.item_choices, self.item = item_choices, item

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        for text in values:
            for part in (p.strip() for p in text.split(",")):
                if not part:
                    continue
                if self.item_choices is not None and part not in self.item_choices:
                    parser.error(f"{option_string}: unknown value {part!r}; choose from "
                                 f"{', '.join(self.item_choices)}")
                try:
                    items.append(self.item(part))
                except argparse.ArgumentTypeError as exc:
                    parser.error(f"{option_string}: {exc}")
        setattr(namespace, self.dest, items)


def _device_name(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; choose cuda, cuda:N or cpu (ROCm GPUs are cuda)")
    return text


_device_name.__name__ = "--device"


def _existing_path(text: str) -> str:
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such image file or folder: {text}")
    return text


_existing_path.__name__ = "--images"


LIST_STYLE = "comma-separated or repeated"


def build_parser() -> argparse.ArgumentParser:
    from .bench import spec

    parser = _Parser(
        prog="diffusion-kernels",
        description="Fused q_sample for diffusion training. With no subcommand, runs 'validate'. "
                    f"List options are {LIST_STYLE} (--dtype fp32,bf16 or --dtype fp32 --dtype bf16); "
                    "counts take K, M and G suffixes (1M = 1048576).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(p):
        p.add_argument("--device", type=_device_name, help="cuda, cuda:N or cpu (default: cuda if present, else "
                                                            "cpu through Triton's interpreter)")
        p.add_argument("--seed", type=_bounded("--seed", *SEED_RANGE), default=0,
                       help="seed of the noise stream, in [0, 2**64) (default 0)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def dtype_list(p, what, default="all three"):
        p.add_argument("--dtype", action=_ListAction, item_choices=tuple(DTYPES),
                       help=f"{what} ({LIST_STYLE}; float32/fp32, bfloat16/bf16, float16/fp16; "
                            f"default {default})")

    v = sub.add_parser("validate", help="check the fused path against the float64 reference and test the "
                                        "drawn noise's statistics; exit 0 on pass, 1 on fail")
    common(v)
    dtype_list(v, "I/O dtypes to check")
    v.add_argument("--numel", type=_bounded("--numel", *NUMEL_RANGE, parse=_count),
                   help="elements per check, in [1K, 2G] (default 64K; with --stats 4M on a GPU, 256K on CPU)")
    v.add_argument("--stats", action="store_true",
                   help="the full statistical suite: also test that the closed form and the fused step-by-step "
                        "process agree in distribution on a real image, at the --steps timesteps")
    v.add_argument("--steps", action=_ListAction, item=_bounded("--steps", 0, VALIDATE_T - 1),
                   help=f"timesteps for --stats in [0, {VALIDATE_T - 1}], {LIST_STYLE} (default 10,100,500,999 "
                        "on a GPU; 10,100 on CPU, where the interpreter runs ~8 ms per step)")
    v.add_argument("--copies", type=_bounded("--copies", 2, 1 << 16), default=64,
                   help="noisings of the image per timestep for --stats, in [2, 65536] (default 64)")
    v.add_argument("--backend", default="auto", choices=["auto", "triton", "cpu", "reference"],
                   help="the path to check: auto (the kernels on a GPU, or the CPU loop on CPU tensors), triton, "
                        "cpu (the compiled CPU loop, the [cpu] extra) or reference (default auto)")
    v.set_defaults(func="validate")

    f = sub.add_parser("figures", help="draw the forward-diffusion figures (schedules, noising strips, batch "
                                       "grid, 1-D sine, closed form vs step by step, x_T statistics) as PNGs")
    common(f)
    f.add_argument("--out", default="figures", help="output folder (default ./figures)")
    f.add_argument("--images", type=_existing_path, help="an image file or a folder of images to use instead of "
                                                         "the bundled sample photographs")
    f.add_argument("--dtype", default="float32", choices=tuple(DTYPES),
                   help="I/O dtype of the noised tensors (default float32)")
    f.set_defaults(func="figures")

    b = sub.add_parser("bench", help="time fused q_sample against eager, torch.compile, diffusers and a plain "
                                     "copy; print a table, write a JSON record and a PNG plot")
    common(b)
    dtype_list(b, "I/O dtypes to time", "all three on a GPU, float32,bfloat16 on CPU")
    b.add_argument("--sizes", action=_ListAction, item=_bounded("--sizes", *SIZE_RANGE, parse=_count),
                   help=f"element counts in [4, 2G], {LIST_STYLE} (default 64K,1M,16M,64M on a GPU; "
                        "16K,64K on CPU)")
    b.add_argument("--modes", action=_ListAction, item_choices=spec.MODE_CHOICES,
                   help=f"{', '.join(spec.MODE_CHOICES)} ({LIST_STYLE}; default all but sharded and host on "
                        f"a GPU, {','.join(spec.CPU_DEFAULTS['modes'])} on CPU; sharded: 2 processes noising "
                        "one batch split along frames, the broadcast recipe against global positions, at "
                        "1M,4M,16M elements unless --sizes, written to sharded.json and sharded.png; host: "
                        "a call's host time on a 2x4x8x8 batch beside eager and diffusers, written to "
                        "host.json and host.png)")
    b.add_argument("--providers", action=_ListAction, item_choices=spec.PROVIDERS,
                   help=f"{', '.join(spec.PROVIDERS)} ({LIST_STYLE}; default all on a GPU, "
                        f"{','.join(spec.CPU_DEFAULTS['providers'])} on CPU)")
    b.add_argument("--layout", action=_ListAction, item_choices=spec.LAYOUTS,
                   help="x0's memory layout: contiguous (4, N/4) or channels_last 4 × 4 × H × W latents "
                        f"({LIST_STYLE}; default contiguous)")
    b.add_argument("--reps", type=_bounded("--reps", 1, 100_000), default=100,
                   help="timing budget per case in ms on a GPU, in [1, 100000] (default 100)")
    b.add_argument("--out", default=spec.DEFAULT_OUT, help=f"folder for the JSON and PNG (default "
                   f"./{spec.DEFAULT_OUT}); the JSON is updated after every size and dtype, and a record of "
                   "the same device and day there is merged, not overwritten")
    tiles = b.add_argument_group("kernel tiles", "override the noising kernels' tile constants and the launch's "
                                 "sizing to the GPU for this run (a tuning sweep; the noise stream does not "
                                 "change; write each setting to its own --out folder)")
    for flag in ("--block-quads", "--block-quads-paired", "--block-quads-strided", "--num-warps"):
        tiles.add_argument(flag, type=_bounded(flag, 1, 1 << 16),
                           help=f"power of two (default: kernels/noising.py's "
                                f"{flag[2:].upper().replace('-', '_')})")
    tiles.add_argument("--programs-per-sm", type=_bounded("--programs-per-sm", 0, 1024),
                       help="the programs per SM (CU) below which a launch's tile shrinks, 0 for the tuned tile "
                            "at every size (default: launch/tiling.py's PROGRAMS_PER_UNIT)")
    tiles.add_argument("--tiles-per-program", type=_bounded("--tiles-per-program", 1, 64),
                       help="power of two: the most consecutive tiles of its row one program runs, 1 for one "
                            "each (default: launch/tiling.py's MAX_TILES_PER_PROGRAM)")
    tiles.add_argument("--sized-warps", type=_bounded("--sized-warps", 1, 32),
                       help="power of two: the warps a tile shrunk to the GPU keeps before each thread's "
                            "elements are cut, 4 to cut the elements first (default: launch/tiling.py's "
                            "SIZED_WARPS)")
    b.set_defaults(func="bench")
    return parser


def parse(argv, commands) -> argparse.Namespace:
    """The checked arguments, or a UserError: nothing here imports torch or Triton."""
    parser = build_parser()
    argv = list(argv)
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        near = difflib.get_close_matches(argv[0], commands, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; choose from {', '.join(commands)}"
        raise UserError(f"unknown command {argv[0]!r}{hint}")
    if not argv or argv[0] not in (*commands, "-h", "--help", "--version"):
        argv = ["validate", *argv]
    return parser.parse_args(argv)
