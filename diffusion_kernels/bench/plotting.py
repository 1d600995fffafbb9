"""The sweep's plot: GB/s against size, one panel per (mode, dtype), one line per provider."""
from __future__ import annotations

import json
from pathlib import Path

from .spec import LAYOUTS, MODES, PROVIDERS, row_layout


def plot(record: dict, path: Path) -> Path:
    """GB/s against size, one panel per (mode, dtype), one line per provider, copy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["rows"] if r["timed"]]
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    dtypes = sorted({r["dtype"] for r in rows})
    fig, axes = plt.subplots(len(modes) or 1, len(dtypes) or 1, figsize=(5 * max(len(dtypes), 1),
                                                                         3.6 * max(len(modes), 1)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            for layout, style in zip(LAYOUTS, ("-", ":")):
                suffix = "" if layout == "contiguous" else f", {layout}"
                copy = sorted((r["numel"], r["gbps"]) for r in rows
                              if r["mode"] == "copy" and r["dtype"] == dtype and row_layout(r) == layout)
                if copy:
                    ax.plot(*zip(*copy), "k--" if layout == "contiguous" else "k-.", label=f"copy (floor{suffix})")
                for k, provider in enumerate(PROVIDERS[:-1]):
                    pts = sorted((r["numel"], r["gbps"]) for r in rows if r["mode"] == mode and r["dtype"] == dtype
                                 and r["provider"] == provider and row_layout(r) == layout)
                    if pts:
                        ax.plot(*zip(*pts), "o" + style, color=f"C{k}", label=provider + suffix)
            ax.set_xscale("log")
            ax.set_yscale("log")  # providers an order of magnitude under the copy floor stay readable
            ax.set(title=f"{mode}, {dtype}", xlabel="elements", ylabel="effective GB/s")
            ax.grid(True, alpha=0.3)
    # One legend for the figure, below the panels: inside a panel it covered the copy line.
    labels = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    env = record["environment"]
    fig.suptitle(f"noising and loss bandwidth on {env['device']}\n{env['date'][:10]}, torch {env['torch']}, "
                 f"triton {env['triton']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if labels:  # a record of untimed rows alone (the interpreter's) draws no line
        fig.legend(labels.values(), labels.keys(), loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path




def save_record(record: dict, out_dir, name: str, draw) -> tuple[Path, Path]:
    """A mode's own record as ``<name>.json`` in ``out_dir`` and the figure ``draw(pyplot)`` makes of it as
    ``<name>.png`` (the sharded and host modes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(record, indent=1))
    fig = draw(plt)
    png_path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return json_path, png_path
