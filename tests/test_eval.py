"""The Table 1 harnesses: FID through torch-fidelity, the DenseNet121 mAP harness, intervals,
label fidelity, the oracle."""

import os

import numpy as np
import pytest
import torch

from ltbench.eval.classifier import ClassifierConfig, average_precisions, head_tail_map, mean_interval, predict, train_classifier
from ltbench.eval.fid import INCEPTION_EXTRACTOR, NA_INCEPTION, ORACLE_EXTRACTOR, fid, inception_weights, register_extractors, tail_fid
from ltbench.eval.fidelity import label_fidelity
from ltbench.eval.oracle import load_oracle


@pytest.fixture(scope="module")
def phantom_images():
    from ltbench.data.phantom import PhantomConfig, generate

    return generate(PhantomConfig(n=240, seed=11, min_test_positives=0))


# ---- FID -------------------------------------------------------------------------------
def test_oracle_extractor_is_registered_with_torch_fidelity(tiny_oracle):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    register_extractors()
    register_extractors()  # idempotent
    assert ORACLE_EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY


def test_fid_of_a_set_against_itself_is_zero(tiny_oracle, phantom_images):
    imgs = phantom_images.images[:120]
    assert abs(fid(imgs, imgs, ORACLE_EXTRACTOR, os.path.join(tiny_oracle, "oracle.pt"))) < 1e-6


def test_fid_grows_with_added_noise(tiny_oracle, phantom_images):
    w = os.path.join(tiny_oracle, "oracle.pt")
    real, other = phantom_images.images[:120], phantom_images.images[120:]
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (0, 20, 60):
        noisy = np.clip(other.astype(np.float64) + rng.normal(0, sigma, other.shape), 0, 255).round().astype(np.uint8)
        scores.append(fid(real, noisy, ORACLE_EXTRACTOR, w))
    assert scores[0] < scores[1] < scores[2], scores


def test_fid_does_not_depend_on_batch_size(tiny_oracle, phantom_images):
    w = os.path.join(tiny_oracle, "oracle.pt")
    a, b = phantom_images.images[:100], phantom_images.images[100:190]
    assert fid(a, b, ORACLE_EXTRACTOR, w, batch_size=7) == pytest.approx(fid(a, b, ORACLE_EXTRACTOR, w, batch_size=64), rel=1e-6)


def test_tail_fid_is_per_class_and_averaged(tiny_oracle, phantom_images):
    from ltbench.data.classes import PAPER_CLASSES

    w = os.path.join(tiny_oracle, "oracle.pt")
    imgs = phantom_images.images
    classes = list(PAPER_CLASSES)
    labels = np.zeros((len(imgs), len(classes)), np.uint8)
    labels[:60, classes.index("Fracture")] = 1
    labels[60:130, classes.index("Pneumothorax")] = 1
    real = {"Fracture": imgs[130:190], "Pneumothorax": imgs[190:], "Tortuous Aorta": imgs[:10]}
    out = tail_fid(real, imgs, labels, classes, ["Fracture", "Pneumothorax", "Tortuous Aorta"], ORACLE_EXTRACTOR, w)
    assert out["per_class"]["Fracture"] == pytest.approx(fid(imgs[130:190], imgs[:60], ORACLE_EXTRACTOR, w), rel=1e-9)
    assert out["per_class"]["Tortuous Aorta"] is None  # no generated sample of it
    assert out["mean"] == pytest.approx((out["per_class"]["Fracture"] + out["per_class"]["Pneumothorax"]) / 2)


def test_inception_is_never_downloaded_nor_substituted(tmp_path, monkeypatch, phantom_images):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert inception_weights() is None
    with pytest.raises(FileNotFoundError, match="n/a"):
        fid(phantom_images.images[:10], phantom_images.images[10:20], INCEPTION_EXTRACTOR, None)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        inception_weights(str(tmp_path / "nope.pth"))
    (tmp_path / "checkpoints").mkdir()
    f = tmp_path / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    f.write_bytes(b"")
    assert inception_weights() == str(f)
    assert "n/a" in NA_INCEPTION


def test_fid_rejects_bad_inputs(tiny_oracle):
    w = os.path.join(tiny_oracle, "oracle.pt")
    with pytest.raises(ValueError, match="uint8"):
        fid(np.zeros((4, 64, 64), np.float32), np.zeros((4, 64, 64), np.uint8), ORACLE_EXTRACTOR, w)
    with pytest.raises(ValueError, match="at least 2"):
        fid(np.zeros((1, 64, 64), np.uint8), np.zeros((4, 64, 64), np.uint8), ORACLE_EXTRACTOR, w)


# ---- mAP and intervals -----------------------------------------------------------------
def test_average_precision_matches_a_hand_computed_case():
    # class a: positives ranked 1st and 3rd -> AP = (1/1 + 2/3) / 2; class b: perfect ranking -> 1
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    s = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.9], [0.1, 0.8]])
    ap = average_precisions(y, s, ["a", "b"])
    assert ap["a"] == pytest.approx((1 + 2 / 3) / 2)
    assert ap["b"] == pytest.approx(1.0)
    assert head_tail_map(ap, ["a"], ["b"]) == pytest.approx({"head_map": 5 / 6, "tail_map": 1.0})


def test_average_precision_errors_name_the_problem():
    with pytest.raises(ValueError, match="'b'"):
        average_precisions(np.array([[1, 0], [0, 0]]), np.zeros((2, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        average_precisions(np.array([[1, 1], [0, 1]]), np.array([[np.nan, 0], [0, 0]]), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        average_precisions(np.array([[1, 1]]), np.zeros((2, 2)), ["a", "b"])


def test_interval_is_student_t_and_widens_with_fewer_seeds():
    # t(0.975, df=2) = 4.302653 (tables); sd of [1, 2, 3] = 1
    iv = mean_interval([1.0, 2.0, 3.0])
    assert iv["mean"] == pytest.approx(2.0)
    assert iv["hi"] - iv["mean"] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    values = np.array([0.45, 0.55] * 5)  # the same spread whatever the number of seeds
    widths = [mean_interval(values[:n])["hi"] - mean_interval(values[:n])["lo"] for n in (3, 5, 10)]
    assert widths[0] > widths[1] > widths[2]
    one = mean_interval([0.4])
    assert one == {"mean": 0.4, "lo": None, "hi": None, "n": 1}  # one seed: no invented interval


def test_densenet_harness_learns_a_separable_task():
    g = torch.Generator().manual_seed(0)
    n = 160
    x = (torch.rand(n, 32, 32, generator=g) * 60).to(torch.uint8)
    y = torch.zeros(n, 2, dtype=torch.uint8)
    y[: n // 2, 0] = 1
    x[: n // 2, 8:24, 8:24] += 150  # class 0: a bright square
    y[n // 4 : 3 * n // 4, 1] = 1
    x[n // 4 : 3 * n // 4, :, :4] += 120  # class 1: a bright left edge
    cfg = ClassifierConfig(steps=40, batch_size=16)
    net = train_classifier(x, y, cfg, seed=0)
    assert isinstance(net, torch.nn.Module) and type(net).__name__ == "DenseNet"
    ap = average_precisions(y.numpy(), predict(net, x, cfg), ["square", "edge"])
    assert min(ap.values()) > 0.9, ap


def test_densenet_harness_rejects_bad_input():
    with pytest.raises(ValueError, match="grayscale"):
        train_classifier(np.zeros((4, 3, 32, 32), np.uint8), np.zeros((4, 2)), ClassifierConfig(steps=1, batch_size=2))
    with pytest.raises(ValueError, match="NaN"):
        train_classifier(np.full((4, 32, 32), np.nan, np.float32), np.zeros((4, 2)), ClassifierConfig(steps=1, batch_size=2))
    with pytest.raises(ValueError, match="N = 4"):
        train_classifier(np.zeros((4, 32, 32), np.uint8), np.zeros((3, 2)), ClassifierConfig(steps=1, batch_size=2))


# ---- label fidelity and the oracle ------------------------------------------------------
class _FakeOracle:
    def __init__(self, p):
        self.p = p

    def probs(self, images):
        return self.p


def test_label_fidelity_counts_what_the_oracle_sees():
    classes = ["h", "t1", "t2"]
    labels = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    p = np.array([[0.9, 0.8, 0.0], [0.0, 0.2, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 0.4]])
    out = label_fidelity(_FakeOracle(p), np.zeros((4, 8, 8), np.uint8), labels, classes, ["t1", "t2"])
    assert out["per_class"]["t1"] == {"n": 3, "tail": pytest.approx(2 / 3), "other": 1.0}
    assert out["per_class"]["t2"] == {"n": 1, "tail": 0.0, "other": None}
    assert out["mean_tail"] == pytest.approx(1 / 3)


def test_oracle_round_trip_and_input_checks(tiny_oracle, phantom_images):
    o = load_oracle(tiny_oracle)
    p = o.probs(phantom_images.images[:5])
    assert p.shape == (5, 10) and ((0 <= p) & (p <= 1)).all()
    assert o.features(phantom_images.images[:5]).shape == (5, 4 * o.config["width"])
    with pytest.raises(ValueError, match="64x64"):
        o.probs(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(FileNotFoundError, match="oracle train"):
        load_oracle(os.path.join(tiny_oracle, "missing"))


def test_shipped_oracle_sees_every_class_on_the_benchmark_test_split():
    """Label fidelity and oracle FID mean something only for classes the oracle recognises: on
    the default benchmark's test split (images it never saw) its AP must clear the class's
    prevalence by a margin for every class, the rarest tail classes included."""
    from sklearn.metrics import average_precision_score

    from ltbench.data.classes import PAPER_CLASSES
    from ltbench.data.phantom import PhantomConfig, generate, make_labels

    bench = PhantomConfig()  # the default benchmark: n=10,000, seed 0
    _, split = make_labels(bench)
    test = generate(bench, indices=np.flatnonzero(split == "test"))
    p = load_oracle("phantom").probs(test.images)
    for k, c in enumerate(PAPER_CLASSES):
        prevalence = float(test.labels[:, k].mean())
        ap = average_precision_score(test.labels[:, k], p[:, k])
        assert ap > prevalence + 0.15, f"{c}: oracle AP {ap:.3f} at prevalence {prevalence:.3f}"


def test_xrv_fid_runs_from_a_local_weights_file_only(tmp_path, monkeypatch, phantom_images):
    """XRV-FID: torchxrayvision's DenseNet121 loaded from its cache folder, never downloaded.
    A randomly initialised model saved under the real file name stands in for the weights."""
    import torchxrayvision as xrv

    from ltbench.eval.fid import XRV_EXTRACTOR, XRV_WEIGHTS, xrv_weights

    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path) + os.sep)
    assert xrv_weights() is None  # nothing there: the table says n/a
    name = os.path.basename(xrv.models.model_urls[XRV_WEIGHTS]["weights_url"])
    torch.manual_seed(0)
    torch.save(xrv.models.DenseNet(num_classes=18), tmp_path / name)
    path = xrv_weights()
    assert path == str(tmp_path / name)
    a, b = phantom_images.images[:40], phantom_images.images[40:80]
    between = fid(a, b, XRV_EXTRACTOR, path)
    # 40 samples of 1024-d features: the eigenvalue route leaves round-off, tiny next to a real distance
    assert abs(fid(a, a, XRV_EXTRACTOR, path)) < 1e-4 * between
    assert fid(a, b, XRV_EXTRACTOR, path, batch_size=7) == pytest.approx(fid(a, b, XRV_EXTRACTOR, path, batch_size=40), rel=1e-6)
    with pytest.raises(FileNotFoundError, match="no XRV weights"):
        fid(a, b, XRV_EXTRACTOR, str(tmp_path / "missing.pt"))
