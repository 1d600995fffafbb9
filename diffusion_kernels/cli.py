"""The ``diffusion-kernels`` command line (also ``python -m diffusion_kernels``)."""
from __future__ import annotations

import argparse
import os
import sys

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


class UserError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


# The optional packages each command needs, and the extra that installs them.
EXTRAS = {
    "validate": ("validate", ("scipy", "tqdm")),
    "figures": ("figures", ("scipy", "matplotlib", "PIL", "sklearn", "tqdm")),
    "bench": ("bench", ("matplotlib", "tqdm")),
}


def _require_extra(command: str) -> None:
    """A UserError naming the pip command when a package the command needs is not installed."""
    import importlib.util

    extra, modules = EXTRAS[command]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"'{command}' needs {', '.join(missing)}: pip install 'diffusion-kernels[{extra}]'")


def _resolve_device(name: str | None):
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    if device.type == "cpu":
        # The kernels run on CPU tensors through Triton's interpreter, which must be
        # chosen before Triton is first imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return device


def _dtypes(names):
    import torch

    out = []
    for name in names:
        if name not in DTYPES:
            raise UserError(f"unknown dtype {name!r}; choose from {', '.join(sorted(set(DTYPES.values())))}")
        out.append(getattr(torch, DTYPES[name]))
    return out


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def cmd_validate(args) -> int:
    _require_extra("validate")
    device = _resolve_device(args.device)  # before Triton is imported
    from . import validate

    dtypes = _dtypes(args.dtype or ["float32", "bfloat16", "float16"])
    if args.stats:
        steps = _int_list(args.steps) if args.steps else (
            [10, 100, 500, 999] if device.type == "cuda" else [10, 100])
    else:
        steps = []
    numel = args.numel or ((1 << 22 if device.type == "cuda" else 1 << 18) if args.stats else 1 << 16)
    report = validate.run(device, dtypes=dtypes, numel=numel, seed=args.seed, backend=args.backend,
                          progress=not args.quiet, trajectory_steps=steps, trajectory_copies=args.copies)
    print(report.format())
    return 0 if report.passed else 1


def cmd_figures(args) -> int:
    _require_extra("figures")
    device = _resolve_device(args.device)  # before Triton is imported
    from . import figures

    (dtype,) = _dtypes([args.dtype])
    paths = figures.make_all(args.out, device=device, dtype=dtype, seed=args.seed, images_path=args.images,
                             progress=not args.quiet)
    for path in paths:
        print(path)
    return 0


def cmd_bench(args) -> int:
    _require_extra("bench")
    device = _resolve_device(args.device)  # before Triton is imported
    from . import bench

    _dtypes(args.dtype or [])
    dtypes = [DTYPES[d] for d in (args.dtype or ["float32", "bfloat16", "float16"])]
    for name, allowed, values in (("mode", bench.MODES, args.modes), ("provider", bench.PROVIDERS, args.providers)):
        for value in values or ():
            if value not in allowed:
                raise UserError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
    overrides = {name: value for name, value in (("BLOCK_QUADS", args.block_quads),
                                                 ("BLOCK_QUADS_PAIRED", args.block_quads_paired),
                                                 ("BLOCK_QUADS_STRIDED", args.block_quads_strided),
                                                 ("NUM_WARPS", args.num_warps)) if value is not None}
    try:
        bench.set_tiles(**overrides)
    except ValueError as err:
        raise UserError(str(err)) from None
    env = bench.environment(device)
    start = env["date"]
    conflict = bench.mergeable(args.out, env)
    if conflict:
        raise UserError(conflict)

    def checkpoint(partial):
        bench.write({**partial, "environment": {**partial["environment"], "date": start}}, args.out, draw=False)

    sizes = _int_list(args.sizes) if args.sizes else None
    layouts = tuple(args.layout or ["contiguous"])
    for size in sizes or ():
        for layout in layouts:
            try:
                bench.batch_shape(size, layout)
            except ValueError as err:
                raise UserError(str(err)) from None
    record = bench.run(device, sizes=sizes, dtypes=dtypes, modes=tuple(args.modes or bench.MODES),
                       providers=tuple(args.providers or bench.PROVIDERS), layouts=layouts, reps=args.reps,
                       seed=args.seed, progress=not args.quiet, on_case=checkpoint)
    record["environment"]["date"] = start
    print(bench.format_table(record))
    json_path, png_path = bench.write(record, args.out)
    print(f"\nwrote {json_path}\nwrote {png_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-kernels",
        description="Fused q_sample for diffusion training. With no subcommand, runs 'validate'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p):
        p.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda if present, else cpu through "
                                        "Triton's interpreter)")
        p.add_argument("--seed", type=int, default=0, help="seed of the noise stream (default 0)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    v = sub.add_parser("validate", help="check the fused path against the float64 reference and test the "
                                        "drawn noise's statistics; exit 0 on pass, 1 on fail")
    common(v)
    v.add_argument("--dtype", action="append", help="I/O dtype to check (repeatable; default float32, "
                                                     "bfloat16 and float16)")
    v.add_argument("--numel", type=int, help="elements per check (default 65536; with --stats 4M on a GPU, "
                                              "256K on CPU)")
    v.add_argument("--stats", action="store_true",
                   help="the full statistical suite: also test that the closed form and the fused step-by-step "
                        "process agree in distribution on a real image, at the --steps timesteps")
    v.add_argument("--steps", help="timesteps for --stats, comma-separated (default 10,100,500,999 on a GPU; "
                                   "10,100 on CPU, where the interpreter runs ~8 ms per step)")
    v.add_argument("--copies", type=int, default=64, help="noisings of the image per timestep for --stats "
                                                          "(default 64)")
    v.add_argument("--backend", default="auto", choices=["auto", "triton", "reference"])
    v.set_defaults(func=cmd_validate)

    f = sub.add_parser("figures", help="draw the forward-diffusion figures (schedules, noising strips, batch "
                                       "grid, 1-D sine, closed form vs step by step, x_T statistics) as PNGs")
    common(f)
    f.add_argument("--out", default="figures", help="output folder (default ./figures)")
    f.add_argument("--images", help="an image file or a folder of images to use instead of the bundled "
                                    "sample photographs")
    f.add_argument("--dtype", default="float32", help="I/O dtype of the noised tensors (default float32)")
    f.set_defaults(func=cmd_figures)

    b = sub.add_parser("bench", help="time fused q_sample against eager, torch.compile, diffusers and a plain "
                                     "copy; print a table, write a JSON record and a PNG plot")
    common(b)
    b.add_argument("--dtype", action="append", help="float32, bfloat16, float16 (repeatable; default all three)")
    b.add_argument("--sizes", help="element counts, comma-separated (default 65536,1M,16M,64M on a GPU; "
                                   "4096,16384 on CPU)")
    b.add_argument("--modes", nargs="+", help="xt_eps, xt, given_noise, backward (default all)")
    b.add_argument("--providers", nargs="+", help="fused, eager, compile, diffusers, copy (default all)")
    b.add_argument("--layout", action="append", choices=["contiguous", "channels_last"],
                   help="x0's memory layout: contiguous (4, N/4) or channels_last 4 × 4 × H × W latents "
                        "(repeatable; default contiguous)")
    b.add_argument("--reps", type=int, default=100, help="timing budget per case in ms on a GPU (default 100)")
    b.add_argument("--out", default="benchmarks/results", help="folder for the JSON and PNG (default "
                   "benchmarks/results); the JSON is updated after every size and dtype, and a record of "
                   "the same device and day there is merged, not overwritten")
    tiles = b.add_argument_group("kernel tiles", "override the noising kernels' tile constants for this run "
                                 "(a tuning sweep; the noise stream does not change; write each setting to its "
                                 "own --out folder)")
    for flag in ("--block-quads", "--block-quads-paired", "--block-quads-strided", "--num-warps"):
        tiles.add_argument(flag, type=int, help=f"power of two (default: kernels/q_sample.py's "
                                                f"{flag[2:].upper().replace('-', '_')})")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = parser._subparsers._group_actions[0].choices
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help")):
        argv = ["validate", *argv]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"diffusion-kernels: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"diffusion-kernels: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
