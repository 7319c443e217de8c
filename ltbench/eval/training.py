"""The training-side contract of the mAP harness, and its registry: long-tail methods that
change HOW the classifier trains, not what it is shown (class-weighted losses, logit
adjustment, class-balanced re-sampling with classifier re-training).

A method is a ``TrainingMethod``: the constructor only stores hyper-parameters;
``fit(y_real)`` reads the statistics it needs from the REAL train split's labels (never the
generated images': a loss weighted by what a generator added would re-weight the generator,
not the data) and keeps them in attributes ending in ``_``. ``train_classifier(...,
method=)`` (``ltbench.eval.classifier``) then asks it three things, each defaulting to the
plain harness:

* ``loss(logits, targets) -> scalar``: the mean over the batch's rows (and classes) of a
  per-element loss. It must be a mean over rows: under torchrun the harness rescales each
  rank's loss by its share of the global batch (``ltbench.utils.dist.ddp_loss_scale``).
  Default: BCE with logits, exactly the ``none`` row's loss.
* ``batches(y, n_real, steps, batch_size, seed, share)``: the index batches to train on, or
  ``None`` for the harness's paired stream (``paired_batches``: the same real images in the
  same order as ``none``). A sampler of its own gives up that pairing.
* ``prepare(net, seed) -> parameters``: called once on the network in train mode, before the
  optimiser is made; it may re-initialise or freeze parts (``eval()`` on a module keeps its
  BatchNorm statistics fixed) and returns the parameters to optimise. Default: all of them.

Everything else is the harness's: the seed's initialisation or warm start, the step budget,
the one-cycle AdamW schedule, DDP under torchrun. ``method=None`` is the plain BCE row,
bit-identical to the harness before methods existed (tested).

Plug-ins: any installed package adds methods through the ``ltbench.training`` entry-point
group (the long-tail baselines register this way, from ``pyproject.toml``)::

    [project.entry-points."ltbench.training"]
    my-loss = "my_package.module:MyMethod"

An entry point is imported only when its method is made or the registry is listed;
``ltbench`` never imports a plug-in package by name.
"""

import torch
import torch.nn.functional as F

TRAINING_METHODS: dict[str, type] = {}
ENTRY_POINT_GROUP = "ltbench.training"


def register_training_method(cls):
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    if cls.name in TRAINING_METHODS and TRAINING_METHODS[cls.name] is not cls:
        raise ValueError(f"training method {cls.name!r} is already registered")
    TRAINING_METHODS[cls.name] = cls
    return cls


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def training_method_names() -> list[str]:
    """Every available training method: the registered ones and the installed entry points
    (not imported)."""
    return sorted(set(TRAINING_METHODS) | set(_entry_points()))


def _load(name: str) -> None:
    if name in TRAINING_METHODS:
        return
    ep = _entry_points().get(name)
    if ep is None:
        return
    cls = ep.load()  # importing the module may register it already
    if getattr(cls, "name", None) != name:
        raise ValueError(f"entry point {ENTRY_POINT_GROUP}:{name} = {ep.value} names a training method whose `name` is {getattr(cls, 'name', None)!r}")
    if TRAINING_METHODS.get(name) is not cls:
        register_training_method(cls)


def load_all() -> dict[str, type]:
    """Import every available training method; returns the registry."""
    for name in training_method_names():
        _load(name)
    return TRAINING_METHODS


def training_method_class(name: str) -> type:
    _load(name)
    if name not in TRAINING_METHODS:
        raise KeyError(f"unknown training method {name!r}; available: {training_method_names()}")
    return TRAINING_METHODS[name]


def make_training_method(name: str, **params) -> "TrainingMethod":
    return training_method_class(name)(**params)


def class_counts(y_real: torch.Tensor, method: str) -> tuple[torch.Tensor, int]:
    """(positives float64[K], N) of 0/1 labels Tensor[N, K]; a class with no positive or no
    negative is an error: its prior, its weight and its balanced share are undefined."""
    y = torch.as_tensor(y_real)
    if y.ndim != 2 or len(y) == 0:
        raise ValueError(f"{method}: real train labels must be a non-empty [N, K], got {tuple(y.shape)}")
    pos = (y > 0.5).sum(0).double()
    empty = [k for k in range(y.shape[1]) if pos[k] == 0]
    full = [k for k in range(y.shape[1]) if pos[k] == len(y)]
    if empty:
        raise ValueError(f"{method}: class(es) {empty} have no positive in the real train split (of {len(y)} images), so their weight or prior is undefined")
    if full:
        raise ValueError(f"{method}: class(es) {full} are positive on every real train image, so their weight or prior is undefined")
    return pos, len(y)


class TrainingMethod:
    """Base class and the plain recipe: BCE with logits on the paired stream, every parameter
    trained. Subclasses set ``name`` and override what they change."""

    name: str = ""
    needs_warm_start: bool = False  # True: needs train_classifier(init=...), a learned representation

    def fit(self, y_real: torch.Tensor) -> "TrainingMethod":
        """Statistics of the real train labels float Tensor[N_real, K] in {0, 1}."""
        return self

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets Tensor[B, K] -> the mean loss (a 0-d Tensor)."""
        return F.binary_cross_entropy_with_logits(logits, targets)

    def batches(self, y: torch.Tensor, n_real: int, steps: int, batch_size: int, seed: int, share: float):
        """An iterable of ``steps`` LongTensor[batch_size] into the pool (labels y Tensor[N, K],
        the first ``n_real`` rows real), or None: the harness's paired stream."""
        return None

    def prepare(self, net: torch.nn.Module, seed: int) -> list:
        """The parameters to optimise (the network is in train mode)."""
        return list(net.parameters())

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


@register_training_method
class PlainBCE(TrainingMethod):
    """``bce``: the plain recipe under a name (``method=None`` is the same)."""

    name = "bce"


def resolve_training_method(method) -> TrainingMethod:
    """None (plain BCE), a registered name (made with its defaults) or a ``TrainingMethod``."""
    if method is None:
        return PlainBCE()
    if isinstance(method, str):
        return make_training_method(method)
    if isinstance(method, TrainingMethod):
        return method
    raise TypeError(f"method must be None, a training method name or a TrainingMethod, got {type(method).__name__}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "PlainBCE",
    "TRAINING_METHODS",
    "TrainingMethod",
    "class_counts",
    "load_all",
    "make_training_method",
    "register_training_method",
    "resolve_training_method",
    "training_method_class",
    "training_method_names",
]
