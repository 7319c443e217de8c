"""The paper's experiments (``python -m ltbench.reproduce``), layered one way down:

* ``rows``, ``presets``: Table 1's rows and presets; ``schema``: the cell (key, validation,
  loading), which every reader of results goes through;
* ``stages``: what cells share, computed once per run folder (data, latents, references, warm
  starts, the IL fit, the oracle's ceiling), with locks and stamps;
* ``cells``: one cell's evaluation; ``table1``, ``diagnostics``, ``refine_sweep``,
  ``projection``, ``rehearsal``: the experiments;
* ``report``, ``diagnostics_report``, ``benchtable``, ``figures``: tables and figures rendered
  from result files only, never importing an experiment;
* ``provenance``: the identity of what a committed result measured.
"""
