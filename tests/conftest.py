import os

import pytest
import torch

from ltbench.testing import make_tiny_vae_prior

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may touch the network
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (pyproject's marker; ``pytest -m cuda`` selects them) run where torch
    sees a CUDA device and are skipped elsewhere: one rule instead of a skipif per test."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marker cuda)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory):
    return make_tiny_vae_prior(str(tmp_path_factory.mktemp("prior")))


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    from ltbench.data.phantom import PhantomConfig, write_phantom

    out = str(tmp_path_factory.mktemp("phantom") / "ph")
    return write_phantom(PhantomConfig(n=120, size=32, seed=3, min_test_positives=0), out, progress=False)


@pytest.fixture(scope="session")
def tiny_oracle(tmp_path_factory):
    """A quickly trained phantom oracle (its numbers mean nothing; its plumbing is real)."""
    from ltbench.data.phantom import PhantomConfig
    from ltbench.eval.oracle import OracleConfig, train_oracle

    out = str(tmp_path_factory.mktemp("oracle"))
    train_oracle(OracleConfig(n_images=300, epochs=1, width=8, n_calibration=300), out, eval_phantom=PhantomConfig(n=400, min_test_positives=1), progress=False)
    return out


@pytest.fixture(scope="session")
def latents():
    """Phantom latents from the shipped prior's VAE (8x16x16) with their labels, and the prior."""
    import numpy as np

    from ltbench.data.phantom import PhantomConfig, generate
    from ltbench.prior.pipeline import load_prior

    d = generate(PhantomConfig(n=900, size=64, seed=11, min_test_positives=0))
    prior = load_prior("phantom")
    x = torch.from_numpy(d.images).float()[:, None].expand(-1, 3, -1, -1) / 255
    return prior.encode(x), d.labels.astype(np.uint8), prior


@pytest.fixture
def source_copy(tmp_path, monkeypatch):
    """copy(tops) -> folder: the repository paths ``tops`` (folders or files) copied under
    tmp_path, with ``provenance.REPO_ROOT`` pointed at the copy, so a test can change a source
    and see which identities go stale."""
    import shutil

    from ltbench.reproduce import provenance

    root = provenance.REPO_ROOT

    def copy(tops):
        for top in tops:
            src = os.path.join(root, top)
            if os.path.isdir(src):
                shutil.copytree(src, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            else:
                (tmp_path / top).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, tmp_path / top)
        monkeypatch.setattr(provenance, "REPO_ROOT", str(tmp_path))
        return tmp_path

    return copy
