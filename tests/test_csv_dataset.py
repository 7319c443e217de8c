"""Real-dataset loading: any image format, classes by name, clear errors on bad input."""

import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ltbench.data.classes import PAPER_CLASSES
from ltbench.data.csv_dataset import CsvImageDataset, ImageConfig, collate_skip_none
from ltbench.data.images import ImageReadError, read_image, to_model_input
from ltbench.data.presets import open_dataset

CLASSES = ("Cardiomegaly", "Pneumothorax")


def _folder(tmp_path, rows, images=None):
    """A labels CSV + images; ``images`` maps file name -> PIL image (default: gray 40x30)."""
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    for name in {r["path"] for r in rows}:
        img = (images or {}).get(name, Image.fromarray(np.full((30, 40), 128, np.uint8)))
        if img is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            img.save(root / name)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return str(root), str(root / "labels.csv")


def test_any_mode_bit_depth_and_size_become_model_input(tmp_path):
    grad16 = (np.linspace(0, 65535, 50 * 70).reshape(50, 70)).astype(np.uint16)
    images = {
        "a16.png": Image.fromarray(grad16),
        "rgb.jpg": Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)),
        "l.png": Image.fromarray(np.full((16, 16), 255, np.uint8)),
        "p.png": Image.fromarray(np.zeros((20, 20), np.uint8)).convert("P"),
    }
    rows = [{"path": k, "Cardiomegaly": 1, "Pneumothorax": 0, "Extra": "x"} for k in images]
    root, csv = _folder(tmp_path, rows, images)
    for channels in (1, 3):
        ds = CsvImageDataset(csv, root, CLASSES, ImageConfig(size=32, channels=channels))
        for i in range(len(ds)):
            x, y, idx = ds[i]
            assert x.shape == (channels, 32, 32) and x.dtype == torch.float32 and idx == i
            assert x.min() >= -1 and x.max() <= 1
            assert y.tolist() == [1.0, 0.0]
    # 16-bit depth is kept, not truncated to 8 bits
    a16 = read_image(os.path.join(root, "a16.png"))
    assert a16.max() == pytest.approx(1.0) and len(np.unique(a16)) > 256
    assert to_model_input(np.ones((16, 16), np.float32), 32, 1).eq(1).all()  # white stays white


def test_classes_selected_by_name_not_position(tmp_path):
    rows = [{"path": "a.png", "Pneumothorax": 1, "Other": 0, "Cardiomegaly": 0}]
    root, csv = _folder(tmp_path, rows)
    ds = CsvImageDataset(csv, root, CLASSES)
    assert ds[0][1].tolist() == [0.0, 1.0]


def test_uncertain_and_blank_labels(tmp_path):
    rows = [{"path": "a.png", "Cardiomegaly": -1, "Pneumothorax": None}, {"path": "a.png", "Cardiomegaly": 1.0, "Pneumothorax": 0}]
    root, csv = _folder(tmp_path, rows)
    assert CsvImageDataset(csv, root, CLASSES).labels.tolist() == [[0, 0], [1, 0]]
    assert CsvImageDataset(csv, root, CLASSES, ImageConfig(uncertain="one")).labels.tolist() == [[1, 0], [1, 0]]


def test_missing_root_and_csv(tmp_path):
    root, csv = _folder(tmp_path, [{"path": "a.png", "Cardiomegaly": 1, "Pneumothorax": 0}])
    with pytest.raises(FileNotFoundError, match="image root"):
        CsvImageDataset(csv, str(tmp_path / "nope"), CLASSES)
    with pytest.raises(FileNotFoundError, match="labels CSV not found"):
        CsvImageDataset(str(tmp_path / "none.csv"), root, CLASSES)


def test_missing_class_columns_are_named(tmp_path):
    root, csv = _folder(tmp_path, [{"path": "a.png", "Cardiomegaly": 1}])
    with pytest.raises(KeyError, match="Pneumothorax"):
        CsvImageDataset(csv, root, CLASSES)


def test_bad_label_values(tmp_path):
    root, csv = _folder(tmp_path, [{"path": "a.png", "Cardiomegaly": "yes", "Pneumothorax": 0}])
    with pytest.raises(ValueError, match="'Cardiomegaly'.*'yes'"):
        CsvImageDataset(csv, root, CLASSES)
    root, csv = _folder(tmp_path, [{"path": "a.png", "Cardiomegaly": 2, "Pneumothorax": 0}])
    with pytest.raises(ValueError, match="'Cardiomegaly' has value 2"):
        CsvImageDataset(csv, root, CLASSES)


def test_class_without_positives_warns(tmp_path):
    root, csv = _folder(tmp_path, [{"path": "a.png", "Cardiomegaly": 1, "Pneumothorax": 0}])
    with pytest.warns(UserWarning, match="'Pneumothorax' has no positive"):
        CsvImageDataset(csv, root, CLASSES)


def test_unreadable_image_raise_or_skip(tmp_path):
    rows = [{"path": p, "Cardiomegaly": 1, "Pneumothorax": 1} for p in ("ok.png", "broken.png", "gone.png")]
    root, csv = _folder(tmp_path, rows, {"gone.png": None})
    with open(os.path.join(root, "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    ds = CsvImageDataset(csv, root, CLASSES)
    with pytest.raises(ImageReadError, match="broken.png"):
        ds[1]
    with pytest.raises(ImageReadError, match="not found.*gone.png"):
        ds[2]
    ds = CsvImageDataset(csv, root, CLASSES, ImageConfig(on_error="skip"))
    with pytest.warns(UserWarning, match="broken.png"):
        items = [ds[i] for i in range(3)]
    assert items[1] is None and items[2] is None and ds.skipped == [os.path.join(root, "broken.png"), os.path.join(root, "gone.png")]
    batch = collate_skip_none(items)
    assert batch[0].shape[0] == 1 and batch[2].tolist() == [0]


def test_phantom_folder_through_the_same_loader(phantom_dir):
    ds = open_dataset("phantom", phantom_dir, split="test", image=ImageConfig(size=32))
    assert set(ds.frame["split"]) == {"test"} and ds.classes == PAPER_CLASSES
    x, y, _ = ds[0]
    assert x.shape == (1, 32, 32) and y.shape == (10,)


def test_mimic_preset_reads_its_csv_names(tmp_path):
    from ltbench.data.classes import MIMIC_CXR_LT_19

    rows = [{"path": "files/p10/s1/a.jpg", "dicom_id": "a", **{c: 1 for c in MIMIC_CXR_LT_19}}]
    root = tmp_path / "mimic"
    (root / "files/p10/s1").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "files/p10/s1/a.jpg")
    pd.DataFrame(rows).to_csv(root / "miccai2023_mimic-cxr-lt_labels_test.csv", index=False)
    ds = open_dataset("mimic-cxr-lt-paper", str(root), split="test")
    assert ds.classes == PAPER_CLASSES and ds[0][1].sum() == 10
    assert len(open_dataset("mimic-cxr-lt", str(root), split="test").classes) == 19
    with pytest.raises(FileNotFoundError, match="miccai2023_mimic-cxr-lt_labels_train.csv"):
        open_dataset("mimic-cxr-lt", str(root), split="train")
    with pytest.raises(ValueError, match="explicit labels CSV"):
        open_dataset("cxr-lt-2023", str(root))
    with pytest.raises(KeyError, match="unknown dataset"):
        open_dataset("nih-typo", str(root))


def test_torchxrayvision_dataset_adapter(tmp_path):
    import torchxrayvision as xrv

    from ltbench.data.xrv import XRVAdapter

    imgs = tmp_path / "nih"
    imgs.mkdir()
    probe = xrv.datasets.NIH_Dataset(imgpath=str(imgs), unique_patients=False)
    name = probe.csv["Image Index"].iloc[0]
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100), dtype=np.uint8)).save(imgs / name)
    ds = XRVAdapter(probe, ["Pneumothorax", "Cardiomegaly"], ImageConfig(size=32, channels=3))
    x, y, i = ds[0]
    assert x.shape == (3, 32, 32) and -1 <= x.min() and x.max() <= 1
    assert set(y.tolist()) <= {0.0, 1.0}
    with pytest.raises(KeyError, match="Tortuous Aorta"):
        XRVAdapter(probe, ["Tortuous Aorta"])
