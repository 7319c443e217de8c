"""ltbench: a reproducible benchmark for long-tail image augmentation in the latent space of
diffusion models (Elberg, Parra, Petrache, "Long Tail Image Generation Through Feature Space
Augmentation and Iterated Learning", LXAI @ CVPR 2024), on CXR-Phantom-LT or real chest
X-ray data."""

__version__ = "0.1.0"
