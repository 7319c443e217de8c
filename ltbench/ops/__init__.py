"""Tensor ops of the method, with fused C++/CUDA kernels when ``ltbench._C`` is built and
pure-PyTorch references otherwise. This layer imports nothing else of ltbench."""

from ltbench.ops._backend import backend, extension_available
from ltbench.ops.probe import probe_scale, probe_scale_reference

__all__ = ["backend", "extension_available", "probe_scale", "probe_scale_reference"]
