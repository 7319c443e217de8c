"""Table 1's baseline augmenters, registered plug-ins sharing the ``fsa-il`` contract
(``ltbench.augment``). One module per baseline; no baseline imports another."""

from baselines import none, oversample, smote, t2i  # noqa: F401  (registration)
