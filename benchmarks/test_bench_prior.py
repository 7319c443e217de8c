"""Generation cost on the shipped phantom prior: text-to-image at 75 steps vs refinement @1
and @5 of given latents, side by side in one run (``--benchmark-group-by=group``).

Run: ``pytest benchmarks/ --benchmark-only -k prior``."""

import pytest
import torch

from ltbench.prior.pipeline import load_prior

N = 16
PROMPTS = ["Pneumothorax"] * N


@pytest.fixture(scope="module")
def prior():
    return load_prior("phantom", device="cpu")


@pytest.fixture(scope="module")
def latents(prior):
    return prior.text_to_image(PROMPTS, steps=10, guidance=4.0, seed=0)


def _run(benchmark, prior, fn, label):
    res = {}

    def call():
        with prior.count_unet() as c:
            res["out"] = fn()
        res["evals"] = c.rows / N

    benchmark.pedantic(call, rounds=2, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(samples=N, unet_evals_per_sample=res["evals"], samples_per_s=N / benchmark.stats.stats.mean, mode=label)
    return res


@pytest.mark.benchmark(group="prior-generation")
def test_prior_t2i_75(benchmark, prior):
    res = _run(benchmark, prior, lambda: prior.decode(prior.text_to_image(PROMPTS, steps=75, guidance=4.0, seed=1)), "t2i@75")
    assert res["out"].shape == (N, 3, 64, 64) and res["evals"] == 150


@pytest.mark.benchmark(group="prior-generation")
@pytest.mark.parametrize("k", [1, 5])
def test_prior_refine(benchmark, prior, latents, k):
    res = _run(benchmark, prior, lambda: prior.decode(prior.refine(latents, PROMPTS, k=k, steps=75, guidance=3.5)), f"refine@{k}")
    assert res["out"].shape == (N, 3, 64, 64) and torch.isfinite(res["out"]).all() and res["evals"] == 2 * k
