"""The lab's figure: per-NIC TX and RX packets of both phases side by side, and goodput.

matplotlib is an optional dependency (`pip install '.[lab]'` in the clone), imported only here.
"""

from __future__ import annotations

import os
from types import ModuleType

from multihome.errors import MultihomeError
from multihome.lab.report import LabResult

# as the README says: the lab's extra, installed from the clone (or matplotlib by itself)
PLOT_HINT = "pip install '.[lab]' in the clone of multihome (or pip install matplotlib)"


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MultihomeError("--plot needs matplotlib", hint=PLOT_HINT) from None
    return plt


def check(path: str) -> None:
    """Before the run, so that a run is never lost to a figure that cannot be written: the
    format (from the file name's extension, PNG without one) and a writable directory."""
    plt = _pyplot()
    formats = plt.gcf().canvas.get_supported_filetypes()
    plt.close("all")
    extension = os.path.splitext(path)[1][1:].lower()
    if extension and extension not in formats:
        raise MultihomeError(
            f"--plot {path}: matplotlib cannot write .{extension} files",
            hint=f"name the file with one of: {', '.join('.' + f for f in sorted(formats))}",
        )
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MultihomeError(f"--plot {path}: is a directory", hint="give a file name")
    if not os.path.isdir(directory):
        raise MultihomeError(
            f"--plot {path}: the directory {directory} does not exist", hint="create it first"
        )
    if not os.access(directory, os.W_OK):
        raise MultihomeError(f"--plot {path}: the directory {directory} is not writable")


def write_png(result: LabResult, path: str) -> None:
    """The figure, in the format the file name asks for (PNG by default)."""
    plt = _pyplot()
    names = [i.name for i in result.phases[0].interfaces]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [3, 3, 2]})
    width = 0.8 / len(result.phases)
    colours = {"destination": "#c0504d", "policy": "#4f81bd"}
    for ax, direction in zip(axes[:2], ("tx", "rx"), strict=True):
        for k, phase in enumerate(result.phases):
            values = [getattr(i.counters, f"{direction}_packets") for i in phase.interfaces]
            positions = [n + (k - (len(result.phases) - 1) / 2) * width for n in range(len(names))]
            ax.bar(positions, values, width, label=phase.name, color=colours.get(phase.name))
        ax.set_xticks(range(len(names)), names)
        ax.set_title(f"server {direction.upper()} packets per NIC")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.legend()
    goodput = [p.goodput_bps / 1e6 for p in result.phases]
    axes[2].bar(
        [p.name for p in result.phases], goodput, color=[colours.get(p.name) for p in result.phases]
    )
    axes[2].set_title("goodput (Mbit/s)")
    if result.link_rate_bps:
        axes[2].axhline(
            result.link_rate_bps * result.nics / 1e6,
            linestyle="--",
            color="grey",
            label="sum of NIC rates",
        )
        axes[2].legend()
    rate = f", {result.link_rate_bps / 1e6:g} Mbit/s per NIC" if result.link_rate_bps else ""
    figure.suptitle(
        f"multihome lab {result.scenario}: {result.requests} x {result.size} bytes, "
        f"{result.concurrency} parallel, {result.nics} NICs{rate}"
    )
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except (OSError, ValueError) as error:
        raise MultihomeError(f"could not write the plot {path}: {error}") from None
    finally:
        plt.close(figure)
