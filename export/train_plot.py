"""The training curve: loss and validation accuracy per family against steps (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path


def plot_curve(curve: dict, path: Path, title: str) -> Path | None:
    """Loss (left) and validation accuracy per family (right) against steps; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(curve["step"], curve["loss"], label="all")
    a.plot(curve["step"], curve["single"], label="still scenes", alpha=0.6)
    a.plot(curve["step"], curve["sequence"], label="motion items", alpha=0.6)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("loss (answer tokens)")
    a.legend()
    for family in (curve["accuracy"][0] if curve["accuracy"] else {}):
        b.plot(curve["eval_step"], [acc[family] for acc in curve["accuracy"]], marker=".", label=family)
    b.set_ylim(0, 1.02)
    b.set_xlabel("step")
    b.set_ylabel("validation accuracy")
    b.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
