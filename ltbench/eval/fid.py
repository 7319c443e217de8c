"""FID through torch-fidelity (never a hand-written Frechet distance).

Feature spaces:
* ``ltbench-oracle``: the phantom oracle's penultimate features, registered with
  torch-fidelity's ``register_feature_extractor``; the weights file is passed the standard way
  (``feature_extractor_weights_path``).
* ``ltbench-xrv``: torchxrayvision's DenseNet121 (``densenet121-res224-all``) penultimate
  features ("XRV-FID", RoentGen's choice for chest X-rays), only when its weights file is on
  disk (torchxrayvision's cache, ``~/.torchxrayvision/models_data``); "n/a (no XRV weights)"
  otherwise.
* ``inception-v3-compat``: torch-fidelity's Inception, only when its weights file is on disk
  (torch-fidelity's cache or an explicit path); never downloaded, never silently replaced.
  ``inception_weights()`` says whether it is available; the table then prints
  "n/a (no Inception weights)".

No weights file runs code: torch-fidelity 0.4 reads Inception's with ``torch.load(
weights_only=False)`` and torchxrayvision its DenseNet's likewise, so a crafted file in a
shared cache would execute on every run. ltbench reads both itself without unpickling code
(``ltbench.utils.weights``) and hands torch-fidelity extractors built from those tensors
(``ltbench-inception-v3-compat``, registered here, is torch-fidelity's own Inception network
fed the checked tensors); ``check_weights`` refuses a bad file early, in one line naming it.

Images are uint8 grayscale [N, H, W] (or [N, 1, H, W]); Inception sees them repeated to RGB.
"""

import os

import numpy as np
import torch
from torch.utils.data import Dataset

ORACLE_EXTRACTOR = "ltbench-oracle"
INCEPTION_EXTRACTOR = "inception-v3-compat"
XRV_EXTRACTOR = "ltbench-xrv"
XRV_WEIGHTS = "densenet121-res224-all"
NA_XRV = "n/a (no XRV weights)"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
SAFE_INCEPTION = "ltbench-" + INCEPTION_EXTRACTOR  # torch-fidelity's Inception, weights read by ltbench
NA_INCEPTION = "n/a (no Inception weights)"


class ImageTensorDataset(Dataset):
    """uint8 [N, H, W] grayscale -> uint8 Tensor[channels, H, W] items (torch-fidelity's input)."""

    def __init__(self, images, channels: int = 1):
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.dtype != torch.uint8:
            raise ValueError(f"FID inputs must be uint8 grayscale images [N, H, W], got {tuple(x.shape)} {x.dtype}")
        self.x, self.channels = x, channels

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i][None].expand(self.channels, -1, -1).contiguous()


def _penultimate_base():
    """torch-fidelity's extractor base with one feature, 'penultimate', used for every metric."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class PenultimateFeatures(FeatureExtractorBase):
        @staticmethod
        def get_provided_features_list():
            return ("penultimate",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "penultimate"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

    return PenultimateFeatures


def _oracle_extractor_class():
    class OracleFeatures(_penultimate_base()):
        """torch-fidelity feature extractor: the oracle's penultimate layer ('penultimate')."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            from ltbench.eval.oracle import load_oracle

            if feature_extractor_weights_path is None:
                raise ValueError("the oracle feature extractor needs feature_extractor_weights_path (an oracle.pt)")
            self.oracle = load_oracle(feature_extractor_weights_path)
            self.net = self.oracle.net

        def forward(self, x):
            # uint8 [B, 1, H, W] from ImageTensorDataset; float64 features for the statistics
            if tuple(x.shape[-2:]) != (self.oracle.size, self.oracle.size):  # as Oracle.probs refuses them
                raise ValueError(f"the oracle's FID features need {self.oracle.size}x{self.oracle.size} images (its training size), got {tuple(x.shape[-2:])}")
            return (self.net.features(x.float() / 255).double(),)

    return OracleFeatures


def load_xrv_densenet(path: str):
    """torchxrayvision's DenseNet121 with the weights of ``path`` (its ``densenet121-res224-all``
    file, a whole pickled model), read without running code from the file: the tensors are
    loaded into a freshly built ``xrv.models.DenseNet`` (never torchxrayvision's own loader,
    which unpickles with ``weights_only=False``). Eval mode."""
    from ltbench.data.xrv import import_torchxrayvision
    from ltbench.utils.weights import load_module_tensors

    xrv = import_torchxrayvision()
    state = load_module_tensors(path, ("torch.nn.modules.", "torchxrayvision."), what="XRV weights file")
    net = xrv.models.DenseNet(num_classes=len(xrv.models.model_urls[XRV_WEIGHTS]["labels"]))
    want = net.state_dict()
    missing = sorted(set(want) - set(state))
    if missing or any(state[k].shape != want[k].shape for k in want):
        raise ValueError(f"XRV weights file {path} is not {XRV_WEIGHTS}'s DenseNet121 (missing or misshapen tensors, e.g. {(missing or [k for k in want if state[k].shape != want[k].shape])[:3]})")
    net.load_state_dict({k: state[k] for k in want})
    return net.eval().requires_grad_(False)


def _xrv_extractor_class():
    class XRVFeatures(_penultimate_base()):
        """torch-fidelity feature extractor: torchxrayvision DenseNet121's pooled 1024-d
        features ('penultimate'), from a local weights file only."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None or not os.path.isfile(feature_extractor_weights_path):
                raise FileNotFoundError(f"XRV-FID needs the local weights file of {XRV_WEIGHTS}; {NA_XRV}")
            self.net = load_xrv_densenet(feature_extractor_weights_path)

        def forward(self, x):
            # uint8 [B, 1, H, W] -> torchxrayvision's range [-1024, 1024] at 224 px
            x = torch.nn.functional.interpolate(x.float(), size=(224, 224), mode="area") / 255 * 2048 - 1024
            f = torch.nn.functional.relu(self.net.features(x))
            return (torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1).double(),)

    return XRVFeatures


def _inception_extractor_class():
    import io

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class SafeInception(FeatureExtractorInceptionV3):
        """torch-fidelity's Inception network and features, its weights read by ltbench
        (weights-only state dict) instead of its ``torch.load(weights_only=False)``; never
        downloaded."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            from ltbench.utils.weights import load_state_dict_file

            if feature_extractor_weights_path is None:
                raise FileNotFoundError("Inception FID needs its weights file locally; " + NA_INCEPTION)
            state = load_state_dict_file(feature_extractor_weights_path, "Inception weights file")
            # torch-fidelity unpickles what it is given: hand it the checked tensors, re-saved
            # by us in memory (plain tensors only), never the user's file
            buf = io.BytesIO()
            torch.save(state, buf)
            buf.seek(0)
            try:
                super().__init__(name, features_list, feature_extractor_weights_path=buf, **kwargs)
            except RuntimeError as exc:  # load_state_dict: the tensors are not Inception's
                raise ValueError(f"Inception weights file {feature_extractor_weights_path} does not fit torch-fidelity's Inception ({str(exc).splitlines()[0]})") from None

    return SafeInception


def _fidelity_name(extractor: str) -> str:
    """The registry name torch-fidelity is asked for: Inception always through ltbench's
    checked loader, never torch-fidelity's own."""
    return SAFE_INCEPTION if extractor == INCEPTION_EXTRACTOR else extractor


def register_extractors() -> None:
    """Register ``ltbench-oracle``, ``ltbench-xrv`` and ltbench's Inception with torch-fidelity
    (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if ORACLE_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(ORACLE_EXTRACTOR, _oracle_extractor_class())
    if XRV_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(XRV_EXTRACTOR, _xrv_extractor_class())
    if SAFE_INCEPTION not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(SAFE_INCEPTION, _inception_extractor_class())


def check_weights(extractor: str, weights: str | None) -> None:
    """Refuse, cheaply and early (before any stage runs), a weights file the extractor could
    not use or that would run code: Inception's and XRV's files are read here as the metrics
    will read them; the oracle's as ``load_oracle`` reads it. One-line ``ValueError`` /
    ``FileNotFoundError`` naming the file. ``weights`` None: nothing to check."""
    if weights is None:
        return
    if extractor == INCEPTION_EXTRACTOR:
        from ltbench.utils.weights import load_state_dict_file

        load_state_dict_file(weights, "Inception weights file")
    elif extractor == XRV_EXTRACTOR:
        load_xrv_densenet(weights)
    elif extractor == ORACLE_EXTRACTOR:
        from ltbench.eval.oracle import load_oracle

        load_oracle(weights)
    else:
        raise KeyError(f"unknown feature space {extractor!r}; ltbench's: {[ORACLE_EXTRACTOR, INCEPTION_EXTRACTOR, XRV_EXTRACTOR]}")


def xrv_weights() -> str | None:
    """The local file of torchxrayvision's ``densenet121-res224-all`` weights in its cache
    folder, or None (never downloaded)."""
    from ltbench.data.xrv import import_torchxrayvision

    xrv = import_torchxrayvision()

    name = os.path.basename(xrv.models.model_urls[XRV_WEIGHTS]["weights_url"])
    path = os.path.join(xrv.utils.get_cache_dir(), name)
    return path if os.path.isfile(path) else None


def inception_weights(path: str | None = None) -> str | None:
    """The local Inception weights file: ``path`` if given (must exist), else torch-fidelity's
    download cache (torch hub's checkpoints folder). None when absent: nothing is downloaded."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Inception weights {path} do not exist")
        return path
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", INCEPTION_FILE)
    return cached if os.path.isfile(cached) else None


def _channels(extractor: str, weights: str | None, batch_size: int = 1) -> int:
    """Registers ltbench's extractors; the channels ``extractor`` reads (Inception: RGB, and
    only from a local weights file)."""
    from ltbench.config import check_value

    check_value("batch_size", batch_size, int, ge=1)
    register_extractors()
    if extractor == INCEPTION_EXTRACTOR and weights is None:
        raise FileNotFoundError("Inception FID needs its weights file locally; " + NA_INCEPTION)
    return 3 if extractor == INCEPTION_EXTRACTOR else 1


def _inputs(real, fake, extractor: str, weights: str | None, at_least: int, what: str, batch_size: int = 1):
    """Both image sets as torch-fidelity inputs, after the checks every metric shares."""
    channels = _channels(extractor, weights, batch_size)
    a, b = ImageTensorDataset(real, channels), ImageTensorDataset(fake, channels)
    for name, d in (("real", a), ("generated", b)):
        if len(d) < at_least:
            raise ValueError(f"{what} needs at least {at_least} {name} images, got {len(d)}")
    return a, b


def _cuda(device) -> bool:
    """torch-fidelity's ``cuda`` flag for ``device``: None keeps its old meaning (CUDA whenever
    available); otherwise ``resolve_device``'s answer (torch-fidelity runs on the current CUDA
    device, which torchrun ranks set to their own)."""
    if device is None:
        return torch.cuda.is_available()
    from ltbench.utils.device import resolve_device

    return resolve_device(device).type == "cuda"


def fid(real, fake, extractor: str = ORACLE_EXTRACTOR, weights: str | None = None, batch_size: int = 64, device=None) -> float:
    """FID between two uint8 image sets [N, H, W] in the given feature space, by
    ``torch_fidelity.calculate_metrics``. ``weights``: the oracle file, or Inception's.
    ``device``: auto, cpu, cuda (None: CUDA when available). Features are float32 on every
    device (no autocast: FID is the instrument, and its statistics are computed in float64)."""
    import torch_fidelity

    a, b = _inputs(real, fake, extractor, weights, 2, "FID", batch_size)
    out = torch_fidelity.calculate_metrics(
        input1=b, input2=a, fid=True, feature_extractor=_fidelity_name(extractor), feature_extractor_weights_path=weights,
        batch_size=batch_size, cuda=_cuda(device), save_cpu_ram=True, cache=False, verbose=False,
    )
    return float(out["frechet_inception_distance"])


def features(images, extractor: str = ORACLE_EXTRACTOR, weights: str | None = None, batch_size: int = 64, device=None) -> torch.Tensor:
    """The features torch-fidelity's metrics see for uint8 images [N, H, W]: float64 [N, D]
    from its ``get_featuresdict_from_dataset`` with the registered extractor (the oracle's: its
    penultimate layer). For statistics beyond one ``calculate_metrics`` call, e.g. bootstrap
    intervals (``ltbench.eval.bootstrap``)."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    data = ImageTensorDataset(images, _channels(extractor, weights, batch_size))
    cuda = _cuda(device)
    extractor_net = create_feature_extractor(_fidelity_name(extractor), ["2048" if extractor == INCEPTION_EXTRACTOR else "penultimate"], cuda=cuda, feature_extractor_weights_path=weights, verbose=False)
    if len(data) == 0:
        raise ValueError("features of an empty image set")
    out = get_featuresdict_from_dataset(data, extractor_net, batch_size, cuda, True, False)
    return next(iter(out.values())).double().cpu()


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets [N, D] by torch-fidelity's own statistics and distance
    (``fid_features_to_statistics``, ``fid_statistics_to_metric``): the value
    ``distribution_metrics`` reports for the images the features came from."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    return float(fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real), False)[KEY_METRIC_FID])


KID_SUBSETS = 100  # torch-fidelity's default number of KID subsets
PRC_NEIGHBORHOOD = 3  # torch-fidelity's default k of the k-NN balls (Kynkaanniemi et al.)


def distribution_metrics(real, fake, extractor: str = ORACLE_EXTRACTOR, weights: str | None = None, batch_size: int = 64, device=None) -> dict:
    """FID, KID and precision/recall of uint8 image sets [N, H, W], in ONE
    ``torch_fidelity.calculate_metrics`` call (features extracted once). KID's subset size is
    the smaller set's size (torch-fidelity's default of 1000 needs more images than a tail
    class has); PRC needs more images than its neighbourhood. Precision = share of generated
    images inside the real manifold (fidelity), recall = share of real images inside the
    generated one (diversity): torch-fidelity >= 0.4 (earlier releases swapped the two).
    Returns {"fid", "kid", "kid_std", "precision", "recall"}."""
    import torch_fidelity

    a, b = _inputs(real, fake, extractor, weights, PRC_NEIGHBORHOOD + 2, "FID/KID/PRC", batch_size)
    out = torch_fidelity.calculate_metrics(
        input1=b, input2=a, fid=True, kid=True, prc=True, kid_subset_size=min(len(a), len(b)), kid_subsets=KID_SUBSETS,
        prc_neighborhood=PRC_NEIGHBORHOOD, feature_extractor=_fidelity_name(extractor), feature_extractor_weights_path=weights,
        batch_size=batch_size, cuda=_cuda(device), save_cpu_ram=True, cache=False, verbose=False,
    )
    return {
        "fid": float(out["frechet_inception_distance"]),
        "kid": float(out["kernel_inception_distance_mean"]),
        "kid_std": float(out["kernel_inception_distance_std"]),
        "precision": float(out["precision"]),
        "recall": float(out["recall"]),
    }


METRICS = ("fid", "kid", "precision", "recall")


def tail_metrics(real_by_class: dict, fake_by_class: dict, tail, extractor: str = ORACLE_EXTRACTOR, weights: str | None = None, batch_size: int = 64, device=None) -> dict:
    """Per tail class c: ``distribution_metrics(real of c, generated FOR c)``, and the mean of
    each metric over classes. ``fake_by_class[c]`` must hold the images generated for class c
    (the same count for every row: union labels give no row extra images). A class with too
    few images on either side gets None. Returns {"per_class": {c: {...} or None}, "mean":
    {metric: float or None}}."""
    per = {}
    for c in tail:
        fake, real = np.asarray(fake_by_class.get(c, np.zeros((0, 1, 1), np.uint8))), np.asarray(real_by_class[c])
        ok = min(len(fake), len(real)) >= PRC_NEIGHBORHOOD + 2
        per[c] = distribution_metrics(real, fake, extractor, weights, batch_size, device) if ok else None
    mean = {}
    for m in METRICS:
        vals = [v[m] for v in per.values() if v is not None]
        mean[m] = float(np.mean(vals)) if vals else None
    return {"per_class": per, "mean": mean}
