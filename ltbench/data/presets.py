"""Registered datasets: name -> how to open it from local paths.

``ltbench`` never downloads data: every preset reads a labels CSV and an image folder the user
already has (MIMIC-CXR-JPG and its long-tail label files are credentialed PhysioNet
downloads). Column names follow the releases; classes are always selected by name."""

import os
from dataclasses import dataclass, field

from ltbench.data.classes import CXR_LT_2023_26, CXR_LT_2024_40, CXR_LT_2024_GOLD_26, HEAD_CLASSES, MIMIC_CXR_LT_19, PAPER_CLASSES, TAIL_CLASSES
from ltbench.data.csv_dataset import CsvImageDataset, ImageConfig


@dataclass(frozen=True)
class DatasetPreset:
    name: str
    classes: tuple
    csv: str | None  # labels file name inside the data folder; "{split}" is filled in
    path_column: str = "path"
    split_files: tuple = ()  # ((split, file), ...): a release whose splits are named otherwise (overrides csv)
    split_column: bool = False  # one CSV with a "split" column instead of one CSV per split
    head: tuple = field(default=())
    tail: tuple = field(default=())
    note: str = ""


DATASETS: dict[str, DatasetPreset] = {}


def register_dataset(preset: DatasetPreset) -> DatasetPreset:
    if preset.name in DATASETS:
        raise ValueError(f"dataset {preset.name!r} is already registered")
    DATASETS[preset.name] = preset
    return preset


register_dataset(DatasetPreset("phantom", PAPER_CLASSES, "labels.csv", split_column=True, head=HEAD_CLASSES, tail=TAIL_CLASSES, note="CXR-Phantom-LT written by `ltbench data phantom`"))
register_dataset(
    DatasetPreset(
        "mimic-cxr-lt",
        MIMIC_CXR_LT_19,
        "miccai2023_mimic-cxr-lt_labels_{split}.csv",
        note="MIMIC-CXR-LT, 19 classes (PhysioNet cxr-lt-iccv-workshop-cvamd v1.1.0); paths relative to the MIMIC-CXR-JPG root",
    )
)
register_dataset(
    DatasetPreset(
        "mimic-cxr-lt-paper",
        PAPER_CLASSES,
        "miccai2023_mimic-cxr-lt_labels_{split}.csv",
        head=HEAD_CLASSES,
        tail=TAIL_CLASSES,
        note="the paper's 5 head + 5 tail subset of MIMIC-CXR-LT (the authors' script reads these CSVs)",
    )
)
register_dataset(
    DatasetPreset(
        "cxr-lt-2024",
        CXR_LT_2024_40,
        None,
        path_column="fpath",
        split_files=(("train", "cxr-lt-2024/train_labeled.csv"), ("val", "cxr-lt-2024/development_labeled_task1.csv"), ("test", "cxr-lt-2024/test_labeled_task1.csv")),
        note="CXR-LT 2024 task 1 (PhysioNet cxr-lt-iccv-workshop-cvamd v2.0.0): 40 labels, report-derived, 'Normal' for no finding; "
        "--data is the MIMIC-CXR-JPG root the `fpath` column is relative to, with the release's cxr-lt-2024/ folder of label CSVs inside it (or linked there)",
    )
)
register_dataset(
    DatasetPreset(
        "cxr-lt-2024-gold",
        CXR_LT_2024_GOLD_26,
        None,
        path_column="fpath",
        split_files=(("train", "cxr-lt-2024/train_labeled.csv"), ("val", "cxr-lt-2024/development_labeled_task2.csv"), ("test", "cxr-lt-2024/test_labeled_task2.csv")),
        note="CXR-LT 2024 task 2: the 26 labels of the radiologist-annotated gold-standard test subset (406 images), trained on task 1's train labels",
    )
)
register_dataset(
    DatasetPreset(
        "cxr-lt-2023",
        CXR_LT_2023_26,
        None,
        note="CXR-LT 2023 challenge, 26 classes; pass the label CSV of each split explicitly (csv=...)",
    )
)


def split_csv(preset: DatasetPreset, root: str, split: str) -> str:
    """The labels CSV of ``split`` of a registered dataset in the folder ``root``."""
    files = dict(preset.split_files)
    if files:
        if split not in files:
            raise ValueError(f"dataset {preset.name!r} has no split {split!r}; it has {sorted(files)}")
        return os.path.join(root, files[split])
    if preset.csv is None:
        raise ValueError(f"dataset {preset.name!r} needs an explicit labels CSV (csv=...): {preset.note}")
    return os.path.join(root, preset.csv.format(split=split))


def open_dataset(name: str, root: str, split: str | None = None, csv: str | None = None, image: ImageConfig = ImageConfig(), classes=None) -> CsvImageDataset:
    """Open a registered dataset from local files.

    ``root`` is the image folder (and where the preset's CSV is looked up unless ``csv`` is
    given); ``classes`` narrows the preset's classes (by name)."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    p = DATASETS[name]
    if csv is None:
        csv = split_csv(p, root, split or "train")
    cls = tuple(classes) if classes is not None else p.classes
    unknown = [c for c in cls if c not in p.classes]
    if unknown:
        raise KeyError(f"dataset {name!r} has no class(es) {unknown}; it has {list(p.classes)}")
    return CsvImageDataset(csv, root, cls, image=image, split=split if p.split_column else None, path_column=p.path_column)


def train_counts(name: str, root: str, classes=None) -> dict:
    """{class: positives in the train split} of a registered dataset, from its labels only (no
    image is read): what a tail chosen by train count (``tail_below``) is chosen from."""
    from ltbench.data.csv_dataset import read_labels

    p = DATASETS[name]
    cls = tuple(classes) if classes is not None else p.classes
    df = read_labels(split_csv(p, root, "train"), cls, p.path_column)
    if p.split_column:
        df = df[df["split"] == "train"]
    return {c: int(df[c].sum()) for c in cls}
