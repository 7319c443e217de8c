"""Table 1's baseline augmenters: plug-ins sharing the ``fsa-il`` contract (``ltbench.augment``),
registered through the ``ltbench.augmenters`` entry points of ``pyproject.toml``, the way a
user's own augmenter registers. One module per baseline; no baseline imports another, and
ltbench never imports this package by name."""
