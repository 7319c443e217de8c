"""Table 1's baselines: augmenters sharing the ``fsa-il`` contract (``ltbench.augment``),
registered through the ``ltbench.augmenters`` entry points of ``pyproject.toml``, and
training methods (``ltbench.eval.training``: wbce, asl, logit-adj, crt) through the
``ltbench.training`` ones, the way a user's own registers. One module per baseline; no
baseline imports another, and ltbench never imports this package by name."""
