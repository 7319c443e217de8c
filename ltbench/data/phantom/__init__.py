"""CXR-Phantom-LT, the embedded default benchmark (``docs/phantom.md``)."""

from ltbench.data.phantom.config import PhantomConfig
from ltbench.data.phantom.generate import (
    PhantomSample,
    bits_to_masks,
    fresh_class_sample,
    generate,
    make_labels,
    masks_to_bits,
    split_masks,
    write_phantom,
)
from ltbench.data.phantom.labels import sample_labels
from ltbench.data.phantom.render import render

__all__ = [
    "PhantomConfig",
    "PhantomSample",
    "bits_to_masks",
    "fresh_class_sample",
    "generate",
    "make_labels",
    "masks_to_bits",
    "render",
    "sample_labels",
    "split_masks",
    "write_phantom",
]
