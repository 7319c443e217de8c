"""Figures of the reproduce layer, written atomically through ``ltbench.utils.io.save_figure``
(a reader never sees half a PNG)."""

import numpy as np

from ltbench.utils.io import save_figure


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sample_grid(real_by_class: dict, images, targets, classes, tail, path: str, n: int = 6, title: str = "") -> None:
    """One line per tail class: ``n`` real images of the class, then ``n`` generated for it
    (``targets`` int[M]: the class index each sample was made for)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(tail), 2 * n, figsize=(2 * n * 0.9, len(tail) * 0.95 + 0.5), squeeze=False)
    for i, c in enumerate(tail):
        gen = np.asarray(images)[np.flatnonzero(np.asarray(targets) == classes.index(c))[:n]] if len(targets) else []
        real = real_by_class[c][:n]
        for j in range(2 * n):
            ax = axes[i, j]
            ax.axis("off")
            src = real if j < n else gen
            jj = j if j < n else j - n
            if jj < len(src):
                ax.imshow(src[jj], cmap="gray", vmin=0, vmax=255)
        axes[i, 0].text(-0.1, 0.5, c, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.17, wspace=0.05, hspace=0.05)
    save_figure(fig, path)


__all__ = ["pyplot", "sample_grid", "save_figure"]
