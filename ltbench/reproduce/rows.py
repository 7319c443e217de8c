"""Table 1's rows: which exist, which a preset runs by default, and the row grammar.

A row name is an augmenter of the registry (``none``, ``smote``, ``t2i``, ...), a floor or
ceiling of the instrument (``real``, ``vae``), ``fsa-il@K[-VARIANT]`` (the method with K
refinement steps and one ``FusionConfig`` field changed, ``FSA_VARIANTS``), a training-side
method of the ``ltbench.training`` registry alone (``wbce``, ``asl``, ``logit-adj``, ``crt``:
no generated image, the classifier trained another way), or ``ROW+METHOD``: a generator's
samples (the same ones as ROW's) with the classifier trained by METHOD."""

# ``real`` and ``vae`` are the instrument's floor and ceiling: held-out real images of each tail
# class (as many as a generator makes) and their autoencoder round trips (the best any
# latent-space method can reach). Every table carries them.
FLOOR_ROWS = ("real", "vae")
PAPER_ROWS = ("none", *FLOOR_ROWS, "smote", "t2i", "fsa-il@0", "fsa-il@1", "fsa-il@5")
# what a user tries before any generator: random oversampling and the training-side long-tail
# methods (class-weighted BCE, class-weighted asymmetric loss, logit adjustment, classifier
# re-training); and one generator x loss cell: fsa-il@5 with the class-weighted asymmetric
# loss, chosen before any result as the field's strongest reported loss (the CXR-LT 2023
# winner's), not by this table
TRAINER_ROWS = ("wbce", "asl", "logit-adj", "crt")
ALTERNATIVE_ROWS = ("oversample", *TRAINER_ROWS)
# and the control of the method's premise: fusion with M^S and M^G at random positions
DEFAULT_ROWS = PAPER_ROWS + ("fsa-il@0-randmask",) + ALTERNATIVE_ROWS + ("fsa-il@5+asl",)
EXTRA_ROWS = ("smote-pixel", "fsa-il@0-tail", "fsa-il@0-oracle", "fsa-il@0-authors", "fsa-il@5-authors")
ALL_ROWS = DEFAULT_ROWS + EXTRA_ROWS

# ``fsa-il@K-<variant>`` changes one FusionConfig field of the preset's
FSA_VARIANTS = {
    "union": {"label_policy": "union"},
    "tail": {"label_policy": "tail"},  # the authors' stored label
    "oracle": {"label_policy": "oracle"},
    "randmask": {"masks": "random"},  # control: M^S, M^G at random positions, same areas
    "authors": {"decoder": "train-batch2"},  # the authors' fusion script: BatchNorm in train mode, pairs
}

# The paper's Table 1 (MIMIC-CXR-LT, RoentGen, Inception FID): our row -> (name, FID, head, tail).
PAPER_TABLE1 = {
    "none": ("Baseline", None, 0.618, 0.155),
    "smote": ("SMOTE", 171.864, 0.578, 0.151),
    "t2i": ("RoentGEN@75", 138.963, 0.618, 0.152),
    "fsa-il@0": ("Ours@0", 191.873, 0.607, 0.152),
    "fsa-il@1": ("Ours@1", 191.646, 0.595, 0.143),
    "fsa-il@5": ("Ours@5", 130.110, 0.595, 0.144),
}


def parse_row(row: str) -> dict:
    """``fsa-il@5`` -> {"method": "fsa-il", "k": 5, "fusion": {}, "space": "latent", "trainer":
    None, "base": "fsa-il@5"}; ``fsa-il@0-tail`` -> fusion {"label_policy": "tail"};
    ``smote-pixel``: SMOTE in pixel space; ``wbce`` -> the ``none`` row trained by ``wbce``;
    ``fsa-il@5+asl`` -> fsa-il@5's samples trained by ``asl``; other names are the augmenter
    itself. Raises ValueError naming the row."""
    from ltbench.eval.training import training_method_names

    base, plus, trainer = row.partition("+")
    methods = training_method_names()
    if plus:
        if trainer not in methods:
            raise ValueError(f"row {row!r}: {trainer!r} is no training method; registered: {', '.join(methods)}")
        if "+" in trainer or base in methods:
            raise ValueError(f"row {row!r}: expected GENERATOR_ROW+METHOD")
        return {**_parse_base(base), "trainer": trainer, "base": base}
    if row in methods and row not in ("bce",):
        return {**_parse_base("none"), "trainer": row, "base": "none"}
    return {**_parse_base(row), "trainer": None, "base": row}


def _parse_base(row: str) -> dict:
    if row.startswith("fsa-il@"):
        k, _, variant = row[len("fsa-il@") :].partition("-")
        if not k.isdigit() or (variant and variant not in FSA_VARIANTS):
            raise ValueError(f"bad fsa-il row {row!r}: expected fsa-il@K or fsa-il@K-VARIANT with VARIANT one of {', '.join(FSA_VARIANTS)}")
        return {"method": "fsa-il", "k": int(k), "fusion": dict(FSA_VARIANTS.get(variant, {})), "space": "latent"}
    if row not in ALL_ROWS and row not in ("none", "oversample", "smote", "t2i"):
        raise ValueError(f"unknown Table 1 row {row!r}; available: {', '.join(ALL_ROWS)} (and ROW+METHOD)")
    if row == "smote-pixel":
        return {"method": "smote", "space": "pixel"}
    return {"method": row, "space": "pixel" if row in ("none", "oversample", *FLOOR_ROWS) else "latent"}
