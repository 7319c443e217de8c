"""The real releases' label layouts, on small synthetic CSVs written in each layout: MIMIC-CXR-LT
2023 (19 classes, `path`), CXR-LT 2023 (26, an explicit CSV), CXR-LT 2024 (40 task-1 labels and
the 26-label gold subset, `fpath`, "Normal", the release's split files); a tail chosen by
train count; and Table 1 run on a registered real layout with that tail, recorded in every
cell."""

import dataclasses
import glob
import json
import os

import numpy as np
import pandas as pd
import pytest

from ltbench.data.classes import CXR_LT_2023_26, CXR_LT_2024_40, CXR_LT_2024_GOLD_26, MIMIC_CXR_LT_19, PAPER_CLASSES
from ltbench.data.presets import open_dataset, train_counts


def _write_images(root, n, size=32, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        rel = f"files/p1{i % 3}/p{1000 + i}/s{5000 + i}/{i:04d}.jpg"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(os.path.join(root, rel))
        paths.append(rel)
    return paths


def _labels(n, classes, rng, rare=()):
    y = (rng.random((n, len(classes))) < 0.3).astype(int)
    for c in rare:
        y[:, classes.index(c)] = (rng.random(n) < 0.05).astype(int)
    return y


def test_every_release_layout_reads_by_class_name(tmp_path):
    rng = np.random.default_rng(0)
    root = str(tmp_path / "mimic-cxr-jpg")
    paths = _write_images(root, 12)
    # MIMIC-CXR-LT 2023: one CSV per split, `path`, columns in an order of their own
    cols = list(reversed(MIMIC_CXR_LT_19))
    for split in ("train", "val", "test"):
        pd.DataFrame({"dicom_id": range(12), "path": paths, **dict(zip(cols, _labels(12, cols, rng).T))}).to_csv(os.path.join(root, f"miccai2023_mimic-cxr-lt_labels_{split}.csv"), index=False)
    ds = open_dataset("mimic-cxr-lt", root, split="val")
    assert ds.classes == MIMIC_CXR_LT_19 and len(ds) == 12
    x, y, _ = ds[3]
    want = pd.read_csv(os.path.join(root, "miccai2023_mimic-cxr-lt_labels_val.csv"))[list(MIMIC_CXR_LT_19)].to_numpy()[3]
    assert np.array_equal(y.numpy(), want)  # selected by name, not by position
    # CXR-LT 2023: 26 classes, the CSV given explicitly
    csv = str(tmp_path / "cxr-lt-2023-train.csv")
    pd.DataFrame({"path": paths, **dict(zip(CXR_LT_2023_26, _labels(12, list(CXR_LT_2023_26), rng).T))}).to_csv(csv, index=False)
    assert open_dataset("cxr-lt-2023", root, csv=csv).classes == CXR_LT_2023_26
    with pytest.raises(ValueError, match="explicit labels CSV"):
        open_dataset("cxr-lt-2023", root)
    # CXR-LT 2024: the release's folder and file names, `fpath`, 40 + the 5 zero-shot columns in train
    os.makedirs(os.path.join(root, "cxr-lt-2024"))
    extra = ["Bulla", "Cardiomyopathy", "Hilum", "Osteopenia", "Scoliosis"]
    train_cols = list(CXR_LT_2024_40) + extra
    y_train = _labels(12, train_cols, rng)
    pd.DataFrame({"study_id": [f"s{5000 + i}" for i in range(12)], "fpath": paths, **dict(zip(train_cols, y_train.T))}).to_csv(os.path.join(root, "cxr-lt-2024", "train_labeled.csv"), index=False)
    for split, task, cls in (("development", 1, CXR_LT_2024_40), ("test", 1, CXR_LT_2024_40), ("development", 2, CXR_LT_2024_GOLD_26), ("test", 2, CXR_LT_2024_GOLD_26)):
        pd.DataFrame({"fpath": paths[:6], **dict(zip(cls, _labels(6, list(cls), rng).T))}).to_csv(os.path.join(root, "cxr-lt-2024", f"{split}_labeled_task{task}.csv"), index=False)
    t1 = open_dataset("cxr-lt-2024", root, split="train")
    assert t1.classes == CXR_LT_2024_40 and "Normal" in t1.classes and "No Finding" not in t1.classes and len(t1) == 12
    assert len(open_dataset("cxr-lt-2024", root, split="test")) == 6
    gold = open_dataset("cxr-lt-2024-gold", root, split="test")
    assert gold.classes == CXR_LT_2024_GOLD_26 and len(gold) == 6
    assert train_counts("cxr-lt-2024", root) == {c: int(y_train[:, train_cols.index(c)].sum()) for c in CXR_LT_2024_40}
    with pytest.raises(ValueError, match="no split 'holdout'"):
        open_dataset("cxr-lt-2024", root, split="holdout")


def _phantom_as_cxr_lt_2024(tmp_path, n=900):
    """The phantom written in MIMIC-CXR-JPG's layout, its labels rewritten as CXR-LT 2024's
    files: the ten phantom classes keep their labels, "Normal" is "no finding", the other 30
    labels are sparse noise (plumbing only)."""
    from ltbench.data.phantom import PhantomConfig, write_phantom

    root = write_phantom(PhantomConfig(n=n, min_test_positives=3, seed=1), str(tmp_path / "jpg"), progress=False, layout="mimic-cxr-lt")
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "cxr-lt-2024"), exist_ok=True)
    files = {"train": "train_labeled.csv", "val": "development_labeled_task1.csv", "test": "test_labeled_task1.csv"}
    for split, name in files.items():
        df = pd.read_csv(os.path.join(root, f"miccai2023_mimic-cxr-lt_labels_{split}.csv"))
        out = {"fpath": df["path"]}
        for c in CXR_LT_2024_40:
            if c in PAPER_CLASSES:
                out[c] = df[c]
            elif c == "Normal":
                out[c] = (df[list(PAPER_CLASSES)].sum(axis=1) == 0).astype(int)
            else:
                out[c] = (rng.random(len(df)) < 0.02).astype(int)
        pd.DataFrame(out).to_csv(os.path.join(root, "cxr-lt-2024", name), index=False)
    return root


def test_tail_by_train_count_is_chosen_and_refused_clearly(tmp_path):
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import class_split

    root = _phantom_as_cxr_lt_2024(tmp_path, n=400)
    counts = train_counts("cxr-lt-2024", root)
    preset = dataclasses.replace(PRESETS["smoke"], dataset="cxr-lt-2024", data_root=root, tail_below=20)
    classes, head, tail = class_split(preset)
    assert classes == list(CXR_LT_2024_40)
    assert tail == [c for c in CXR_LT_2024_40 if 0 < counts[c] < 20] and head == [c for c in CXR_LT_2024_40 if counts[c] >= 20]
    assert not set(head) & set(tail)
    named = class_split(dataclasses.replace(preset, tail_below=0, tail_classes=("Pneumothorax", "Fracture")))
    assert named[2] == ["Fracture", "Pneumothorax"] and len(named[1]) == 38  # in the release's order; the head is the rest
    with pytest.raises(ValueError, match="not classes of dataset"):
        class_split(dataclasses.replace(preset, tail_below=0, tail_classes=("Pneumothoraxx",)))
    with pytest.raises(ValueError, match="not both"):
        dataclasses.replace(preset, tail_classes=("Fracture",))
    with pytest.raises(ValueError, match="no class"):
        class_split(dataclasses.replace(preset, tail_below=1))


@pytest.mark.slow
def test_table1_runs_on_a_real_layout_with_a_tail_by_train_count(tmp_path):
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.table1 import run_table1

    root = _phantom_as_cxr_lt_2024(tmp_path)
    counts = train_counts("cxr-lt-2024", root)
    preset = dataclasses.replace(PRESETS["smoke"], dataset="cxr-lt-2024", data_root=root, image_size=64, oracle=None, tail_below=25, rows=("none", "smote"))
    run_table1(preset, str(tmp_path / "run"), progress=False)
    cells = [json.load(open(f)) for f in sorted(glob.glob(str(tmp_path / "run" / "cells" / "*.json")))]
    tail = [c for c in CXR_LT_2024_40 if 0 < counts[c] < 25]
    assert len(cells) == 2 and all(c["config"]["class_split"]["tail"] == tail for c in cells)
    assert all(c["config"]["dataset"] == "cxr-lt-2024" and c["config"]["tail_below"] == 25 for c in cells)
    smote = next(c for c in cells if c["config"]["row"] == "smote")["results"]
    assert smote["generated_per_class"] == {c: PRESETS["smoke"].n_per_class for c in tail}
    assert set(tail) <= set(smote["average_precision"])
    md = open(tmp_path / "run" / "table1.md").read()
    assert tail[0] in md  # the per-class tables follow the cells' tail
