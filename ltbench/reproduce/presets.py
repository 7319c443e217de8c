"""Presets of ``python -m ltbench.reproduce table1``: one frozen config composing every stage's
config (``docs/evaluation.md``).

* ``smoke``: a tiny phantom, every row, one seed: a CI check that the whole job runs (minutes;
  its numbers mean nothing).
* ``default``: CXR-Phantom-LT at its default size with the shipped phantom prior and oracle,
  on CPU, 4 seeds on a 10,000-image test split, one iterated-learning fit per seed, the
  classifiers (DenseNet121 at 48 px, half width) warm-started per seed (1,200 steps on the real
  train images, shared by the seed's rows, then 40 steps per row at a quarter of the rate, a
  fifth of each batch generated); the wall time of the committed run is in the README.
* ``paper``: MIMIC-CXR-LT (10-class subset) + RoentGen from local paths, the paper's sizes,
  on a GPU.
* ``paper-rehearsal``: the ``paper`` preset's code path and tensor shapes (MIMIC-CXR-LT files
  at 512 px, a RoentGen-shaped pipeline with 4x64x64 latents, DenseNet121 at 224 px) with its
  compute cut to fit a 2-core machine in well under 45 minutes; its inputs are made under
  ``OUT/inputs`` (``ltbench.reproduce.rehearsal``). It measures time and peak memory per stage
  for the projection to the real preset (``python -m ltbench.reproduce project``), not quality.
"""

import dataclasses
from dataclasses import dataclass, field

from ltbench.data.phantom import PhantomConfig
from ltbench.eval.classifier import ClassifierConfig
from ltbench.method.fusion import FusionConfig
from ltbench.method.il import IL_PRESETS, ILConfig
from ltbench.config import PAPER_N_PER_CLASS, ROENTGEN_GUIDANCE, ROENTGEN_STEPS

from ltbench.reproduce.rows import ALL_ROWS, DEFAULT_ROWS, EXTRA_ROWS, FLOOR_ROWS, PAPER_ROWS, PAPER_TABLE1, parse_row  # noqa: F401  (the presets' row lists)


@dataclass(frozen=True)
class Table1Preset:
    name: str
    dataset: str = "phantom"  # "phantom" or "mimic-cxr-lt-paper"
    phantom: PhantomConfig = PhantomConfig()  # the benchmark data (phantom presets)
    prior: str = "phantom"  # diffusers folder or "phantom" (the shipped one)
    oracle: str | None = "phantom"  # label fidelity + domain FID (phantom); None on real data
    rows: tuple = DEFAULT_ROWS
    seeds: int = 2  # cells are mean and 95% interval over this many seeds
    n_per_class: int = 64  # generated samples per tail class (paper: 1000 on 264k images)
    il: ILConfig = IL_PRESETS["phantom"]
    fusion: FusionConfig = FusionConfig()  # per row: refine_steps, seed, n_per_class and the row's variant (rows.FSA_VARIANTS)
    classifier: ClassifierConfig = ClassifierConfig()
    t2i_steps: int = ROENTGEN_STEPS
    t2i_guidance: float = ROENTGEN_GUIDANCE
    fid_real_per_class: int = 256  # real reference images per tail class for FID
    fid_reference_seed: int = 4000  # phantom: seed s's reference is freshly rendered from this + s (files: a draw from the test split)
    heldout_seed: int = 4500  # phantom: seed s's `real` images are freshly rendered from this + s (files: a draw from the val split)
    device: str = "auto"
    data_root: str | None = None  # read `dataset` from this folder (paper: MIMIC-CXR-LT); None: render the phantom in memory
    image_size: int = 64  # px the images are read at (the prior's VAE input; RoentGen: 512)
    train_sample: int = 0  # files: a seeded sample of this many train rows (0 = all), streamed from work/data
    inception_weights: str | None = None  # torch-fidelity Inception file; None = its cache or n/a
    tail_classes: tuple = ()  # the tail, by name (empty: the dataset preset's, or by tail_below); the head is the rest
    tail_below: int = 0  # the tail = classes with fewer train positives than this (and at least one); 0: off
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.tail_classes and self.tail_below:
            raise ValueError("give the tail by name (--tail-classes) or by train count (--tail-below), not both")
        if self.tail_below < 0:
            raise ValueError(f"--tail-below must be >= 0, got {self.tail_below}")
        # one copy of the samples per class: the fusion config carries the preset's
        if self.fusion.n_per_class != self.n_per_class:
            object.__setattr__(self, "fusion", dataclasses.replace(self.fusion, n_per_class=self.n_per_class))

    def il_for(self, seed: int) -> ILConfig:
        """The iterated-learning config of seed ``seed``'s fit: every seed fits its own
        generator (``il.seed + seed``)."""
        return dataclasses.replace(self.il, seed=self.il.seed + seed)

    def row_fusion(self, row: str, seed: int) -> FusionConfig:
        """The fusion config an fsa-il row runs with: the preset's, with the row's refinement
        steps, the seed and the row's variant (``rows.FSA_VARIANTS``)."""
        spec = parse_row(row)
        if spec["method"] != "fsa-il":
            raise ValueError(f"row {row!r} is not an fsa-il row")
        return dataclasses.replace(self.fusion, refine_steps=spec["k"], seed=seed, **spec["fusion"])

    def cell_config(self, row: str, seed: int) -> dict:
        """What a cell's result depends on: everything but the row list and the seed count, with
        an fsa-il row's fusion config as the row runs it."""
        d = dataclasses.asdict(self)
        for k in ("rows", "seeds", "name", "extra"):
            d.pop(k)
        if parse_row(row)["method"] == "fsa-il":
            d["fusion"] = dataclasses.asdict(self.row_fusion(row, seed))
            d["il"] = dataclasses.asdict(self.il_for(seed))
        return {"row": row, "seed": seed, **d}


PRESETS = {
    "smoke": Table1Preset(
        name="smoke",
        phantom=PhantomConfig(n=1000, min_test_positives=1),
        rows=DEFAULT_ROWS,
        seeds=1,
        n_per_class=6,
        il=dataclasses.replace(IL_PRESETS["phantom"], generations=2, ngf=8, max_depth=2, batch_size=128),
        classifier=ClassifierConfig(steps=3, warm_steps=2, batch_size=8),
        fid_real_per_class=16,
    ),
    "default": Table1Preset(
        name="default",
        # 7,000 train images, a 3,000-image val split on which the classifier is chosen
        # (`calibrate`; 8 Pneumomediastinum positives) and a 10,000-image test split read once,
        # by the cells (30 Pneumomediastinum positives)
        phantom=PhantomConfig(n=20_000, train_frac=0.35, val_frac=0.15),
        # power: a shared warm start per seed, and rows that stay near it (peak rate 5e-4, a
        # quarter of the warm start's), make the rows' paired differences small; 4 seeds, because
        # with the calibrated classifier (which sees more of the tail, so the rows differ more)
        # 3 seeds left `real`'s paired tail-mAP half-width at 0.051 and fsa-il@5+asl's at 0.065,
        # above the sizing. The half-widths each group must reach, and those the committed run
        # reached, are in docs/evaluation.md (item 4)
        seeds=4,
        il=dataclasses.replace(IL_PRESETS["phantom"], generations=4),
        # the classifier: DenseNet121's topology at half width (growth 16, stem 32) on the images
        # resized to 48 px, a 1,200-step warm start: the candidate `calibrate` chose on the val
        # split (results/calibration: room to help on 4 of the 5 tail classes, against 2 for the
        # earlier 64 px / 300-step default); a fifth of every row's batch slots go to its
        # generated images (the paper: ~20% of the pool)
        classifier=ClassifierConfig(input_size=48, growth_rate=16, init_features=32, warm_steps=1200, steps=40, finetune_lr=5e-4, generated_share=0.2),
    ),
    "paper": Table1Preset(
        name="paper",
        dataset="mimic-cxr-lt-paper",
        prior="",
        oracle=None,
        rows=PAPER_ROWS,
        seeds=3,
        image_size=512,
        train_sample=20_000,
        n_per_class=PAPER_N_PER_CLASS,
        il=IL_PRESETS["paper"],
        classifier=ClassifierConfig(input_size=224, steps=20_000, batch_size=64, lr=1e-3),
        fid_real_per_class=1000,
    ),
    "paper-rehearsal": Table1Preset(
        name="paper-rehearsal",
        dataset="mimic-cxr-lt-paper",
        prior="",  # made under OUT/inputs unless --prior is given
        oracle=None,
        rows=PAPER_ROWS,
        seeds=1,
        image_size=512,
        train_sample=0,  # all 1,500 train rows (paper: a 20,000-row sample)
        n_per_class=32,  # paper: 1000 (a UNet evaluation of the SD-1.x-shaped UNet at 64x64 costs 0.1 s here)
        il=ILConfig(generations=2, ngf=8, max_depth=4, batch_size=64, lr=1e-3, classifier="small"),  # paper: 20 generations, ngf 64, VGG11
        classifier=ClassifierConfig(input_size=224, warm_steps=12, steps=6, batch_size=8, finetune_lr=5e-4, eval_batch_size=32),  # paper: 20,000 steps of 64
        t2i_steps=3,  # paper: 75
        fid_real_per_class=32,
        extra={"rehearsal": True},
    ),
}
