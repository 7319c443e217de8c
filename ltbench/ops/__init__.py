"""Tensor ops of the method, with fused C++/CUDA kernels when ``ltbench._C`` provides them
and pure-PyTorch references otherwise. This layer imports nothing else of ltbench."""

from ltbench.ops._backend import backend, backend_for, cpu_isa, extension_available, fused_on
from ltbench.ops.method_ops import channel_sample, imitation_bce, mask_fuse
from ltbench.ops.probe import probe_scale, probe_scale_reference
from ltbench.ops.references import channel_sample_reference, imitation_bce_reference, mask_fuse_formula, mask_fuse_reference

__all__ = [
    "backend",
    "backend_for",
    "channel_sample",
    "channel_sample_reference",
    "cpu_isa",
    "extension_available",
    "fused_on",
    "imitation_bce",
    "imitation_bce_reference",
    "mask_fuse",
    "mask_fuse_formula",
    "mask_fuse_reference",
    "probe_scale",
    "probe_scale_reference",
]
