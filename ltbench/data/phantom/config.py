"""The one source of CXR-Phantom-LT's defaults."""

from dataclasses import dataclass

from ltbench.config import Config, opt

MAX_N = 10_000_000  # images; far beyond any benchmark (the default is 10,000), a typo guard


def n_test_images(n: int, train_frac: float, val_frac: float) -> int:
    """Images in the test split of ``n`` (what ``assign_split`` leaves after train and val)."""
    return n - int(round(train_frac * n)) - int(round(val_frac * n))


@dataclass(frozen=True)
class PhantomConfig(Config):
    """What to generate and how it looks. The difficulty knobs are ``strength_scale``,
    ``min_strength``, ``noise`` and ``anatomy_jitter``."""

    n: int = opt(10_000, "images; the default preset's size (renders in well under a minute on 2 cores)", ge=1, le=MAX_N)
    seed: int = opt(0, "labels, split and every image derive from it: same seed, same bytes", ge=0)
    size: int = opt(64, "px; any power of two in [16, 512] (512 = RoentGen's input size)", ge=16, le=512)
    strength_scale: float = opt(0.6, "multiplies every finding's contrast: the main difficulty knob (0.6: calibrated so DenseNet121 lands in the paper's mAP regime, see results/README.md)", ge=0, le=100)
    min_strength: float = opt(0.3, "per-finding strength ~ U(min_strength, 1), so some positives are subtle", ge=0, le=1)
    noise: float = opt(0.025, "per-pixel quantum-noise sigma, in display units before contrast", ge=0, le=100)
    anatomy_jitter: float = opt(1.0, "scales pose, size, contrast and exposure variation between patients", ge=0, le=100)
    train_frac: float = opt(0.7, "split fractions; test takes the rest (0.2 by default)", ge=0, le=1)
    val_frac: float = opt(0.1, "validation split fraction", ge=0, le=1)
    min_test_positives: int = opt(5, "every class appears at least this often in test, so tail AP is defined", ge=0)

    def __post_init__(self):
        if self.size & (self.size - 1):
            raise ValueError(f"--size must be a power of two in [16, 512], got {self.size}")
        if self.train_frac + self.val_frac > 1:
            raise ValueError(f"--train-frac + --val-frac must be <= 1, got {self.train_frac} + {self.val_frac}")
        n_test = n_test_images(self.n, self.train_frac, self.val_frac)
        # each class needs m positives AND a negative in test; labels are switched on only for
        # test rows, so m >= the test size would make every test image positive for every class
        if n_test and self.min_test_positives >= n_test:
            raise ValueError(
                f"--min-test-positives {self.min_test_positives} cannot be met: the test split has {n_test} images at --n {self.n} "
                f"(--train-frac {self.train_frac}, --val-frac {self.val_frac}); every test image would carry every finding. "
                f"Lower it (0 turns the guarantee off) or raise --n"
            )
