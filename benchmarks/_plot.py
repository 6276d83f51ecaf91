"""The cost-growth plot: steady epoch and share of the matmul ceiling against batch size,
jaxnet float32, jaxnet bf16 (where measured) and PyTorch, one line style per hidden width."""

from __future__ import annotations

import os
from pathlib import Path

SERIES = (("jaxnet", "jaxnet float32", "tab:blue"), ("jaxnet_bf16", "jaxnet bf16", "tab:green"),
          ("pytorch", "PyTorch", "tab:orange"))


def plot_grid(grid: list[dict], ceiling: float, path: Path, title: str) -> bool:
    """Write the plot to ``path`` (atomically); False (and a line) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e .[bench])")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    widths = sorted({c["hidden"][0] for c in grid})
    for width in widths:
        cells = sorted((c for c in grid if c["hidden"][0] == width), key=lambda c: c["batch_size"])
        hidden = "-".join(map(str, cells[0]["hidden"]))
        style = "-" if width == min(widths) else "--"
        for key, name, color in SERIES:
            have = [c for c in cells if c.get(f"{key}_s") is not None]
            if not have:
                continue
            b = [c["batch_size"] for c in have]
            left.plot(b, [c[f"{key}_s"] for c in have], style, marker="o", color=color,
                      label=f"{name}, hidden {hidden}")
            right.plot(b, [100 * c[f"{key}_share"] for c in have], style, marker="o",
                       color=color)
    batches = sorted({c["batch_size"] for c in grid})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
    left.set_yscale("log")
    left.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
    left.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_ylabel("steady-state epoch (s)")
    right.set_ylabel(f"% of fp32 matmul ceiling ({ceiling:.0f} GFLOP/s)")
    left.legend(fontsize=6, handlelength=3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    plt.close(fig)
    return True
