"""``ltbench classify``: the benchmark's head/tail mAP harness on a user's dataset.

DenseNet121 (``ClassifierConfig``) trained on the train split plus an optional folder of
generated images (the output of ``ltbench augment`` or ``ltbench generate``), scored by
per-class average precision on the test split; the same harness Table 1 uses
(``train_classifier``, ``score_classifier``). Images are read once into ``OUT/data`` (one uint8 row file per part,
streamed from there); that cache carries the fingerprint of what it was read from (dataset,
folder, label files, image size) and a rerun with other inputs refuses it, naming what differs.
Under torchrun the classifier trains in DistributedDataParallel: rank 0 reads the images and
writes ``metrics.json`` and ``densenet121.pt``."""

import dataclasses
import json
import os

import numpy as np
import torch

from ltbench.eval.classifier import ClassifierConfig, head_tail_map, score_classifier, train_classifier, warm_start

INPUTS_JSON = "inputs.json"


def _fingerprint(dataset: str, data: str, augmented: str | None, image_size: int) -> dict:
    from ltbench.data.presets import DATASETS, split_csv
    from ltbench.utils.io import sha256_file

    preset = DATASETS[dataset]
    labels = {}
    if preset.csv is not None or preset.split_files:
        for split in ("train", "test"):
            f = split_csv(preset, data, split)
            labels[split] = sha256_file(f)[:16] if os.path.isfile(f) else None
    aug = os.path.join(augmented, "labels.csv") if augmented else None
    return {"dataset": dataset, "data": os.path.abspath(data), "labels_sha256": labels, "augmented": os.path.abspath(augmented) if augmented else None, "augmented_labels_sha256": sha256_file(aug)[:16] if aug and os.path.isfile(aug) else None, "image_size": image_size}


def _check_cache(folder: str, want: dict) -> None:
    """Refuse a cache in ``folder`` read from other inputs than ``want``, naming what differs."""
    path = os.path.join(folder, INPUTS_JSON)
    if not os.path.exists(path):
        if any(f.endswith(".npy") for f in os.listdir(folder)):
            raise ValueError(f"{folder} holds images read by an older ltbench (no {INPUTS_JSON}): delete it or choose another --out")
        return
    with open(path) as f:
        got = json.load(f)
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        raise ValueError(f"{folder} was read from other inputs (differs in: {', '.join(diff)}); choose another --out or delete {folder}")


def run_classify(dataset: str, data: str, out: str, cfg: ClassifierConfig = ClassifierConfig(), augmented: str | None = None, image_size: int = 64, seed: int = 0, device: str = "auto", progress: bool = True) -> dict | None:
    """Train and score the harness; returns the metrics written to ``OUT/metrics.json`` (rank
    0; other ranks of a torchrun group return None)."""
    from ltbench.data.csv_dataset import CsvImageDataset, ImageConfig
    from ltbench.data.presets import DATASETS, open_dataset
    from ltbench.data.rows import ConcatRows, RowFile, read_to_rows
    from ltbench.prior.vae import resolve_device
    from ltbench.utils.dist import barrier, is_main
    from ltbench.utils.io import atomic_path, atomic_write_json
    from ltbench.utils.provenance import metadata

    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; registered: {sorted(DATASETS)}")
    if image_size < 16:
        raise ValueError(f"--image-size must be >= 16 px, got {image_size}")
    preset = DATASETS[dataset]
    image = ImageConfig(size=image_size, channels=1, on_error="skip")
    folder = os.path.join(out, "data")
    parts = {"train": lambda: open_dataset(dataset, data, split="train", image=image), "test": lambda: open_dataset(dataset, data, split="test", image=image)}
    if augmented:
        parts["augmented"] = lambda: CsvImageDataset(os.path.join(augmented, "labels.csv"), augmented, preset.classes, image=image)
    if is_main():  # rank 0 reads the images once; the others wait and open its files
        os.makedirs(folder, exist_ok=True)
        want = _fingerprint(dataset, data, augmented, image_size)
        _check_cache(folder, want)
        atomic_write_json(os.path.join(folder, INPUTS_JSON), want)
        for name, make in parts.items():
            if not os.path.exists(os.path.join(folder, f"{name}.labels.npy")):  # written last: marks the part complete
                labels = read_to_rows(make(), os.path.join(folder, f"{name}.npy"), progress=progress, desc=f"read {name}")
                with atomic_path(os.path.join(folder, f"{name}.labels.npy")) as tmp:
                    np.save(tmp, labels, allow_pickle=False)
    barrier()
    x = {n: RowFile(os.path.join(folder, f"{n}.npy")) for n in parts}
    y = {n: np.load(os.path.join(folder, f"{n}.labels.npy")) for n in parts}
    train_x = ConcatRows(x["train"], x["augmented"]) if "augmented" in x else x["train"]
    train_y = np.concatenate([y["train"], y["augmented"]]) if "augmented" in y else y["train"]
    dev = str(resolve_device(device))
    shown = progress and is_main()
    init = warm_start(x["train"], y["train"], cfg, seed=seed, device=dev, progress=shown) if cfg.warm_steps else None
    net = train_classifier(train_x, train_y, cfg, seed=seed, device=dev, n_real=len(x["train"]), init=init, progress=shown)
    if not is_main():
        return None
    ap = score_classifier(net, x["test"], y["test"], preset.classes, cfg)
    res = {"dataset": dataset, "data": data, "augmented": augmented, "sizes": {n: len(v) for n, v in x.items()}, "classifier": dataclasses.asdict(cfg), "seed": seed, "average_precision": ap, "mean_ap": float(np.mean(list(ap.values())))}
    if preset.head and preset.tail:
        res.update(head_tail_map(ap, preset.head, preset.tail))
    res["metadata"] = metadata(seed)
    with atomic_path(os.path.join(out, "densenet121.pt")) as tmp:
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp)
    atomic_write_json(os.path.join(out, "metrics.json"), res)
    return res


__all__ = ["run_classify"]
