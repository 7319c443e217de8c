"""``python -m ltbench.reproduce table1``: the paper's Table 1 on the embedded default.

Not implemented yet: it needs the prior, the method, the baselines and the harnesses. Until
then the command says so and exits with status 3 instead of pretending to run."""
