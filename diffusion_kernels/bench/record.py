"""The sweep's record: rows, speed-ups, the printed table, merging with an earlier record, the files."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .env import environment
from .spec import row_layout


@dataclasses.dataclass
class Row:
    provider: str
    mode: str
    dtype: str
    numel: int
    median_ms: float
    gbps: float
    of_copy: float | None = None
    speedup_of_fused: float | None = None  # this provider's time / ours (fused; cpu where fused is untimed)
    host_us: float | None = None
    temp_bytes: int | None = None
    saved_bytes: int | None = None  # a training step's tensors kept for its backward (bench/training.py)
    timed: bool = True
    note: str = ""
    layout: str = "contiguous"


def make_record(device, sizes, rows: list[Row], memory: list[dict]) -> dict:
    _speedups(rows)
    return {"environment": environment(device), "sizes": list(sizes),
            "rows": [dataclasses.asdict(r) for r in rows], "loss_memory": memory}


def _speedups(rows: list[Row]) -> None:
    """Each row's time over ours: the fused row, or where that ran in the interpreter (CPU), the cpu row."""
    ours = {(r.mode, r.dtype, r.numel, r.layout): r for r in rows if r.provider == "cpu" and r.timed}
    ours.update({(r.mode, r.dtype, r.numel, r.layout): r for r in rows if r.provider == "fused" and r.timed})
    for r in rows:
        f = ours.get((r.mode, r.dtype, r.numel, r.layout))
        if f is not None and r.timed:
            r.speedup_of_fused = r.median_ms / f.median_ms


def format_header(env: dict) -> list[str]:
    return [f"device: {env['device']}   torch {env['torch']}   triton {env['triton']}   {env['date']}",
            f"{'mode':<12} {'dtype':<9} {'layout':<13} {'numel':>10} {'provider':<10} {'median ms':>10} "
            f"{'GB/s':>8} "
            f"{'of copy':>8} {'ours x':>8} {'host us':>8} {'temp MB':>8} {'saved MB':>8}"]


def format_row(r: dict) -> str:
    def fmt(v, spec):
        return format(v, spec) if v is not None else "-"

    mark = "" if r["timed"] else "  (interpreter: correctness run, untimed)"
    timed = r["timed"]
    return (f"{r['mode']:<12} {r['dtype']:<9} {row_layout(r):<13} {r['numel']:>10} {r['provider']:<10} "
            f"{fmt(r['median_ms'] if timed else None, '.4f'):>10} "
            f"{fmt(r['gbps'] if timed else None, '.1f'):>8} {fmt(r['of_copy'], '.2f'):>8} "
            f"{fmt(r.get('speedup_of_fused'), '.2f'):>8} {fmt(r['host_us'], '.1f'):>8} "
            f"{fmt(r['temp_bytes'] / 2**20 if r['temp_bytes'] is not None else None, '.1f'):>8} "
            f"{fmt(r['saved_bytes'] / 2**20 if r.get('saved_bytes') is not None else None, '.3f'):>8}{mark}")


def format_table(record: dict) -> str:
    lines = format_header(record["environment"]) + [format_row(r) for r in record["rows"]]
    return "\n".join(lines + [format_memory(record)])


def format_memory(record: dict) -> str:
    lines = [""]
    lines.append("ε-prediction step, stored ε + F.mse_loss vs noise_mse (ε kept as its seed):")
    for m in record["loss_memory"]:
        line = (f"  {m['dtype']:<9} numel {m['numel']}: held between noising and loss "
                f"{m['stored_noise_held_bytes'] / 2**20:.2f} MiB vs {m['noise_mse_held_bytes'] / 2**20:.2f} MiB")
        if "saved_peak_bytes" in m:
            line += (f"; step peak {m['stored_noise_peak_bytes'] / 2**20:.2f} MiB vs "
                     f"{m['noise_mse_peak_bytes'] / 2**20:.2f} MiB (saved {m['saved_peak_bytes'] / 2**20:.2f} MiB)")
        lines.append(line)
    return "\n".join(lines)


def _row_key(row: dict) -> tuple:
    return row["provider"], row["mode"], row["dtype"], row["numel"], row_layout(row)


def merge(old: dict, new: dict) -> dict:
    """``new`` with the rows and loss-memory entries of ``old`` that it did not measure again.

    A sweep split over several runs (one dtype each, say) on the same device
    and day thus adds up to one record; each row keeps the ratios (of copy,
    speedups) of the run that measured it.
    """
    if old.get("environment", {}).get("tiles") != new["environment"].get("tiles"):
        raise ValueError("cannot merge records measured with different kernel tiles")
    measured = {_row_key(r) for r in new["rows"]}
    rows = [r for r in old["rows"] if _row_key(r) not in measured] + new["rows"]
    remeasured = {m["dtype"] for m in new["loss_memory"]}
    memory = [m for m in old.get("loss_memory", []) if m["dtype"] not in remeasured] + new["loss_memory"]
    order = {n: i for i, n in enumerate(sorted({r["numel"] for r in rows}))}
    rows.sort(key=lambda r: (order[r["numel"]], r["dtype"], row_layout(r), r["mode"] != "copy", r["mode"],
                             r["provider"]))
    return {**new, "sizes": sorted({*old.get("sizes", []), *new["sizes"]}), "rows": rows, "loss_memory": memory}


def write(record: dict, out_dir, *, draw: bool = True) -> tuple[Path, Path | None]:
    """The JSON record and (with ``draw``) its PNG plot, named by device and date.

    An existing record of the same device and day in ``out_dir`` is merged
    with this one (:func:`merge`), not overwritten.
    """
    json_path = record_path(out_dir, record["environment"])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if json_path.exists():
        record = merge(json.loads(json_path.read_text()), record)
    json_path.write_text(json.dumps(record, indent=1))
    from .plotting import plot

    return json_path, (plot(record, json_path.with_suffix(".png")) if draw else None)


def record_path(out_dir, env: dict) -> Path:
    """Where the JSON record of a run with this environment goes: named by device and day."""
    slug = "".join(c if c.isalnum() else "-" for c in env["device"]).strip("-").lower()
    return Path(out_dir) / f"{slug}_{env['date'][:10]}.json"


def mergeable(out_dir, env: dict) -> str | None:
    """Why a run with this environment cannot join the record already in ``out_dir``, or None if it can."""
    path = record_path(out_dir, env)
    if not path.exists():
        return None
    theirs = json.loads(path.read_text()).get("environment", {}).get("tiles")
    if theirs != env["tiles"]:
        return f"{path} was measured with other kernel tiles ({theirs}); write this run to another --out folder"
    return None
