"""The augmenter contract shared by every row of Table 1, and its registry.

imbalanced-learn style: the constructor only stores hyper-parameters; ``fit_generate(X, y)``
returns the NEW samples ``(X_new, y_new)``; ``fit_resample(X, y)`` returns the originals
followed by them. ``X`` is an array/tensor ``[N, ...]`` (latents or images) and ``y`` 0/1
multi-hot ``[N, K]``; returned labels are always 0/1 multi-hot (never the -1/+1 of the
authors' code). State learned by fitting ends in ``_``; randomness comes in through ``seed``.
Augmenters are registered by name; the CLI's and reproduce's choices come from the registry.

Plug-ins: any installed package adds augmenters through the ``ltbench.augmenters`` entry-point
group (the baselines of Table 1 register this way, from ``pyproject.toml``; so does a user's
own package)::

    [project.entry-points."ltbench.augmenters"]
    my-method = "my_package.module:MyAugmenter"

An entry point is imported only when its augmenter is made or the registry is listed; the
dependency goes one way (plug-ins, ``fsa-il`` included, import ``ltbench.augment``, never the
reverse).
"""

import numpy as np
import torch

AUGMENTERS: dict[str, type] = {}


def register_augmenter(cls):
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    if cls.name in AUGMENTERS and AUGMENTERS[cls.name] is not cls:
        raise ValueError(f"augmenter {cls.name!r} is already registered")
    AUGMENTERS[cls.name] = cls
    return cls


ENTRY_POINT_GROUP = "ltbench.augmenters"


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def augmenter_names() -> list[str]:
    """Every available augmenter: the registered ones and the installed entry points (not
    imported)."""
    return sorted(set(AUGMENTERS) | set(_entry_points()))


def _load(name: str) -> None:
    if name in AUGMENTERS:
        return
    ep = _entry_points().get(name)
    if ep is None:
        return
    cls = ep.load()  # importing the module may register it already
    if getattr(cls, "name", None) != name:
        raise ValueError(f"entry point {ENTRY_POINT_GROUP}:{name} = {ep.value} names an augmenter whose `name` is {getattr(cls, 'name', None)!r}")
    if AUGMENTERS.get(name) is not cls:
        register_augmenter(cls)


def load_all() -> dict[str, type]:
    """Import every available augmenter; returns the registry."""
    for name in augmenter_names():
        _load(name)
    return AUGMENTERS


def augmenter_class(name: str) -> type:
    _load(name)
    if name not in AUGMENTERS:
        raise KeyError(f"unknown augmenter {name!r}; available: {augmenter_names()}")
    return AUGMENTERS[name]


def make_augmenter(name: str, **params):
    return augmenter_class(name)(**params)


def check_head_tail(classes, head, tail) -> None:
    """Head and tail classes: known, each named once, disjoint, and at least one of each when
    there is a tail to augment (a fusion pairs every tail example with a head partner).
    ``ValueError`` naming the classes and the option (``--head``/``--tail``)."""
    classes, head, tail = list(classes), list(head), list(tail)
    unknown = [c for c in head + tail if c not in classes]
    if unknown:
        raise ValueError(f"--head/--tail name classes {unknown} that are not among the data's classes {classes}")
    for name, group in (("--head", head), ("--tail", tail)):
        twice = sorted({c for c in group if group.count(c) > 1})
        if twice:
            raise ValueError(f"{name} names {twice} more than once")
    both = [c for c in tail if c in head]
    if both:
        raise ValueError(f"--head and --tail must be disjoint; both name {both}")
    if tail and not head:
        raise ValueError("--head names no class: every tail example needs a head-class partner")


def check_xy(X, y) -> tuple[torch.Tensor, np.ndarray]:
    """Validate and convert: X Tensor[N, ...] finite float on the CPU (a tensor on a GPU is
    copied back: augmenters take and return host tensors, and those that compute on a device
    move what they need), y uint8[N, K] in {0, 1}."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X.detach().cpu())
    y = np.asarray(y)
    if X.ndim < 2 or not X.is_floating_point():
        raise ValueError(f"X must be a float array [N, ...], got shape {tuple(X.shape)} dtype {X.dtype}")
    if y.ndim != 2 or len(y) != len(X):
        raise ValueError(f"y must be [N, K] with N = {len(X)}, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must be 0/1 multi-hot (no -1, no probabilities)")
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    return X.float(), y.astype(np.uint8)


class Augmenter:
    """Base class: subclasses set ``name`` and implement ``_generate(X, y) -> (X_new, y_new)``."""

    name: str = ""

    def fit_generate(self, X, y):
        X, y = check_xy(X, y)
        X_new, y_new = self._generate(X, y)
        y_new = np.asarray(y_new)
        if len(X_new) and (y_new.ndim != 2 or y_new.shape[1] != y.shape[1] or not np.isin(y_new, (0, 1)).all()):
            raise AssertionError(f"{self.name} returned labels that are not 0/1 multi-hot [N, {y.shape[1]}]")
        return torch.as_tensor(X_new).float(), y_new.astype(np.uint8)

    def fit_resample(self, X, y):
        X, y = check_xy(X, y)
        X_new, y_new = self.fit_generate(X, y)
        return torch.cat([X, X_new.reshape(-1, *X.shape[1:])]), np.concatenate([y, y_new.reshape(-1, y.shape[1])])

    def _generate(self, X, y):
        raise NotImplementedError
