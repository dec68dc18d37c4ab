"""PNG charts for the benchmark results (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def latency_cdf(
    path: Path,
    series: Mapping[str, np.ndarray],
    *,
    title: str,
    xlabel: str = "delivery latency (ms, log scale)",
) -> Path:
    """One CDF line per configuration; `series` values are latencies in seconds."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for label, values in series.items():
        arr = np.sort(np.asarray(values, dtype=np.float64)) * 1000.0
        if arr.size == 0:
            continue
        if arr.size > 20000:  # plot a fixed number of quantiles; the curve is the same
            arr = np.quantile(arr, np.linspace(0, 1, 20000))
        y = np.linspace(0, 1, arr.size, endpoint=True)
        ax.plot(
            np.maximum(arr, 1e-3),
            y,
            label=label,
            linewidth=1.4,
            linestyle="--" if "floor" in label else "-",
        )
    if not ax.lines:
        ax.text(0.5, 0.5, "no deliveries", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of deliveries")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def grouped_bars(
    path: Path,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    ylabel: str,
    log: bool = False,
) -> Path:
    """Bars per group (x) for each series (colour); missing values are left out."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else float(v) for v in values]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label)
        for bar, v in zip(bars, vals, strict=True):
            if not np.isnan(v):
                ax.annotate(
                    f"{v:,.3g}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def rate_vs_p99(
    path: Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    limit_ms: float,
    title: str,
) -> Path:
    """One line per ramp: achieved event rate (x) against delivery p99 (y, log), with the limit."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for label, (rates, p99s) in series.items():
        order = np.argsort(np.asarray(rates, dtype=np.float64))
        x = np.asarray(rates, dtype=np.float64)[order]
        y = np.maximum(np.asarray(p99s, dtype=np.float64)[order], 1e-1)
        ax.plot(
            x,
            y,
            marker="o",
            markersize=4,
            label=label,
            linewidth=1.4,
            linestyle="--" if "floor" in label else "-",
        )
    ax.axhline(limit_ms, color="red", linewidth=1, alpha=0.6, label=f"limit {limit_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("events per second published (each to every watcher)")
    ax.set_ylabel("delivery latency p99 (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
