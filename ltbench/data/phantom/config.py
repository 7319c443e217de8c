"""The one source of CXR-Phantom-LT's defaults."""

from dataclasses import dataclass

from ltbench.config import opt


@dataclass(frozen=True)
class PhantomConfig:
    """What to generate and how it looks. The difficulty knobs are ``strength_scale``,
    ``min_strength``, ``noise`` and ``anatomy_jitter``."""

    n: int = opt(10_000, "images; the default preset's size (renders in well under a minute on 2 cores)")
    seed: int = opt(0, "labels, split and every image derive from it: same seed, same bytes")
    size: int = opt(64, "px; any power of two in [16, 512] (512 = RoentGen's input size)")
    strength_scale: float = opt(0.6, "multiplies every finding's contrast: the main difficulty knob (0.6: calibrated so DenseNet121 lands in the paper's mAP regime, see results/README.md)")
    min_strength: float = opt(0.3, "per-finding strength ~ U(min_strength, 1), so some positives are subtle")
    noise: float = opt(0.025, "per-pixel quantum-noise sigma, in display units before contrast")
    anatomy_jitter: float = opt(1.0, "scales pose, size, contrast and exposure variation between patients")
    train_frac: float = opt(0.7, "split fractions; test takes the rest (0.2 by default)")
    val_frac: float = opt(0.1, "validation split fraction")
    min_test_positives: int = opt(5, "every class appears at least this often in test, so tail AP is defined")

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.size < 16 or self.size > 512 or self.size & (self.size - 1):
            raise ValueError(f"phantom size must be a power of two in [16, 512], got {self.size}")
        if not 0.0 <= self.min_strength <= 1.0:
            raise ValueError(f"min_strength must be in [0, 1], got {self.min_strength}")
        if self.strength_scale < 0 or self.noise < 0 or self.anatomy_jitter < 0:
            raise ValueError("strength_scale, noise and anatomy_jitter must be >= 0")
        if self.train_frac < 0 or self.val_frac < 0 or self.train_frac + self.val_frac > 1:
            raise ValueError(f"bad split fractions train={self.train_frac} val={self.val_frac}")
        if self.min_test_positives < 0:
            raise ValueError("min_test_positives must be >= 0")
