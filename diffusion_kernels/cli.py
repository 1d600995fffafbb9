"""The ``diffusion-kernels`` command line (also ``python -m diffusion_kernels``).

Every argument is parsed and checked before torch or Triton is imported, so a
mistake is answered at once, in one line, with exit status 2.
"""
from __future__ import annotations

import os
import sys

from .arguments import DTYPES, VALIDATE_T, UserError, build_parser  # noqa: F401  (the command line's API)
from .arguments import parse as parse_arguments

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
        from .install import extra_line

        raise UserError(f"'{command}' needs {', '.join(missing)}: {extra_line(extra)}")


def _resolve_device(name: str | None):
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cpu":
        # The kernels run on CPU tensors through Triton's interpreter, which must be
        # chosen before Triton is first imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return device


def _dtypes(names):
    import torch

    return [getattr(torch, DTYPES[name]) for name in names]


def cmd_validate(args) -> int:
    _require_extra("validate")
    device = _resolve_device(args.device)  # before Triton is imported
    from . import validate

    dtypes = _dtypes(args.dtype or ["float32", "bfloat16", "float16"])
    if args.stats:
        steps = args.steps or ([10, 100, 500, 999] if device.type == "cuda" else [10, 100])
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


def _tile_overrides(args) -> dict:
    return {name: value for name, value in (("BLOCK_QUADS", args.block_quads),
                                            ("BLOCK_QUADS_PAIRED", args.block_quads_paired),
                                            ("BLOCK_QUADS_STRIDED", args.block_quads_strided),
                                            ("NUM_WARPS", args.num_warps),
                                            ("PROGRAMS_PER_UNIT", args.programs_per_sm),
                                            ("MAX_TILES_PER_PROGRAM", args.tiles_per_program),
                                            ("SIZED_WARPS", args.sized_warps)) if value is not None}


def _check_bench(args) -> None:
    """The bench arguments that need more than one option to check (still before torch)."""
    from .bench import spec

    try:
        spec.check_tiles(**_tile_overrides(args))
        for size in args.sizes or ():
            for layout in args.layout or ["contiguous"]:
                spec.batch_shape(size, layout)
    except ValueError as err:
        raise UserError(str(err)) from None


def cmd_bench(args) -> int:
    _require_extra("bench")
    device = _resolve_device(args.device)  # before Triton is imported
    from . import bench

    # On a CPU, what is not asked for by name is the CPU user's minute (bench/spec.py's CPU_DEFAULTS).
    defaults = bench.CPU_DEFAULTS if device.type == "cpu" else bench.GPU_DEFAULTS
    dtypes = [DTYPES[d] for d in (args.dtype or defaults["dtypes"])]
    modes = tuple(args.modes or defaults["modes"])
    if bench.SHARDED_MODE in modes:
        _bench_sharded(device, args, [d for d in (args.dtype or ["float32"])])
    if bench.HOST_MODE in modes:
        _bench_host(args)
    modes = tuple(m for m in modes if m not in (bench.SHARDED_MODE, bench.HOST_MODE))
    if not modes:
        return 0
    providers = tuple(args.providers or defaults["providers"])
    layouts = tuple(args.layout or ["contiguous"])
    sizes = tuple(args.sizes or (bench.GPU_SIZES if device.type == "cuda" else bench.CPU_SIZES))
    bench.set_tiles(**_tile_overrides(args))
    env = bench.environment(device)
    start = env["date"]
    conflict = bench.mergeable(args.out, env)
    if conflict:
        raise UserError(conflict)
    timed = [p for p in providers if p != "copy"]
    cases = len(sizes) * len(dtypes) * len(layouts) * (len(modes) * len(timed) + 1)
    print(f"bench: {cases} cases ({len(sizes)} sizes × {len(dtypes)} dtypes × {len(layouts)} layouts × "
          f"{len(modes)} modes × {len(timed)} providers, and the copy), about "
          f"{bench.estimate_seconds(cases, args.reps, device.type != 'cuda'):.0f} s (an estimate); "
          f"writing {args.out}", flush=True)
    print("\n".join(bench.format_header(env)), flush=True)
    printed = [0]

    def checkpoint(partial):
        rows = partial["rows"]
        for row in rows[printed[0]:]:
            print(bench.format_row(row), flush=True)
        printed[0] = len(rows)
        bench.write({**partial, "environment": {**partial["environment"], "date": start}}, args.out, draw=False)

    record = bench.run(device, sizes=sizes, dtypes=dtypes, modes=modes, providers=providers, layouts=layouts,
                       reps=args.reps, seed=args.seed, progress=not args.quiet, on_case=checkpoint)
    record["environment"]["date"] = start
    print(bench.format_memory(record))
    json_path, png_path = bench.write(record, args.out)
    print(f"\nwrote {json_path}\nwrote {png_path}")
    return 0


def _bench_sharded(device, args, dtypes) -> None:
    from .bench import sharded

    sizes = tuple(args.sizes or sharded.SIZES)
    print(f"bench sharded: {len(sizes)} sizes × {len(dtypes)} dtypes, {sharded.WORLD} processes; writing "
          f"{args.out}", flush=True)
    record = sharded.run(device, sizes=sizes, dtypes=tuple(DTYPES[d] for d in dtypes))
    print(sharded.format_rows(record))
    json_path, png_path = sharded.write(record, args.out)
    print(f"\nwrote {json_path}\nwrote {png_path}", flush=True)


def _bench_host(args) -> None:
    from .bench import host

    print(f"bench host: {len(host.CASES)} cases × {len(host.PROVIDERS)} providers on a "
          f"{'×'.join(map(str, host.SHAPE))} batch, one thread, interleaved; writing {args.out}", flush=True)
    record = host.run()
    print(host.format_rows(record))
    json_path, png_path = host.write(record, args.out)
    print(f"\nwrote {json_path}\nwrote {png_path}", flush=True)


COMMANDS = {"validate": cmd_validate, "figures": cmd_figures, "bench": cmd_bench}


def parse(argv):
    """The checked arguments, or a UserError; only importing what each check needs, never torch."""
    args = parse_arguments(argv, tuple(COMMANDS))
    if args.func == "bench":
        _check_bench(args)
    return args
def main(argv=None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        return COMMANDS[args.func](args)
    except UserError as exc:
        print(f"diffusion-kernels: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"diffusion-kernels: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
