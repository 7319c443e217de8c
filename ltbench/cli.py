"""``ltbench`` command line: argument parsing only; every command calls into a layer."""

import argparse
import dataclasses
import json
import logging
import os
import sys

from ltbench.config import ROENTGEN_GUIDANCE, ROENTGEN_STEPS, add_config_args, config_from_args


def _cmd_data_phantom(args) -> int:
    from ltbench.data.phantom import PhantomConfig, write_phantom

    cfg = config_from_args(PhantomConfig, args)
    print(json.dumps({"phantom": dataclasses.asdict(cfg)}, indent=2))
    write_phantom(cfg, args.out, batch_size=args.batch_size, progress=not args.quiet, overwrite=args.overwrite, layout=args.layout, upsample_to=args.upsample_to)
    print(f"wrote CXR-Phantom-LT ({cfg.n} images, {cfg.size}px) to {args.out}")
    return 0


def _cmd_encode(args) -> int:
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.presets import DATASETS, open_dataset
    from ltbench.prior.encode import EncodeConfig, encode_dataset
    from ltbench.prior.vae import vae_folder

    with open(os.path.join(vae_folder(args.prior), "config.json")) as f:
        vae_cfg = json.load(f)
    size = args.size or int(vae_cfg.get("sample_size") or 512)
    image = ImageConfig(size=size, channels=int(vae_cfg.get("in_channels", 3)), on_error=args.on_error, uncertain=args.uncertain)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    ds = open_dataset(args.dataset, args.data, split=args.split, csv=args.csv, image=image, classes=classes)
    csv = args.csv or os.path.join(args.data, DATASETS[args.dataset].csv.format(split=args.split or "train"))
    cfg = config_from_args(EncodeConfig, args)
    print(json.dumps({"encode": dataclasses.asdict(cfg), "image": dataclasses.asdict(image), "dataset": args.dataset, "rows": len(ds)}, indent=2))
    encode_dataset(ds, csv, args.prior, args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote latent store {args.out} ({len(ds)} rows)")
    return 0


def _cmd_prior_train(args) -> int:
    from ltbench.prior.train import PRESETS, PriorTrainConfig, train_prior

    base = dataclasses.asdict(PRESETS[args.preset])
    cfg = PriorTrainConfig(**{k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()})
    print(json.dumps({"prior_train": dataclasses.asdict(cfg), "preset": args.preset}, indent=2))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "prior", args.preset)
    work = args.work_dir or os.path.join("runs", f"prior-{args.preset}")
    from ltbench.utils.dist import is_main

    train_prior(cfg, out, work, progress=not args.quiet and is_main())
    if is_main():
        print(f"wrote prior {out}")
    return 0


def _cmd_prior_evaluate(args) -> int:
    from ltbench.prior.pipeline import load_prior
    from ltbench.prior.quality import QualityConfig, evaluate_prior, render_readme, sample_grid
    from ltbench.utils.io import atomic_write_json, atomic_write_text

    prior = load_prior(args.prior, device=args.device, precision=args.precision)
    out = args.out or prior.path
    os.makedirs(out, exist_ok=True)
    cfg = config_from_args(QualityConfig, args)
    print(json.dumps({"prior_evaluate": dataclasses.asdict(cfg), "prior": prior.path}, indent=2))
    quality = evaluate_prior(prior, cfg, progress=not args.quiet)
    if args.oracle != "none":
        from ltbench.eval.oracle import load_oracle, oracle_file
        from ltbench.eval.roundtrip import round_trip_fidelity, round_trip_sample

        images, labels = round_trip_sample(size=prior.pipe.vae.config.sample_size)
        quality["round_trip"] = {"oracle": args.oracle, "per_class": round_trip_fidelity(prior, load_oracle(args.oracle), images, labels, fid_weights=oracle_file(args.oracle))}
    from ltbench.reproduce.provenance import git_sha, prior_weights

    quality["measured"] = {"command": "ltbench " + " ".join(sys.argv[1:]), "git_sha": git_sha(), "weights_sha256": prior_weights(prior.path)}
    atomic_write_json(os.path.join(out, "quality.json"), quality)
    sample_grid(prior, os.path.join(out, "sample_grid.png"), steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed)
    training = {}
    if os.path.exists(os.path.join(prior.path, "training_config.json")):
        with open(os.path.join(prior.path, "training_config.json")) as f:
            training = json.load(f)
    atomic_write_text(os.path.join(out, "README.md"), render_readme(quality, training))
    print(json.dumps(quality, indent=2))
    return 0


def _cmd_oracle_train(args) -> int:
    from ltbench.eval.oracle import SHIPPED, OracleConfig, train_oracle

    cfg = config_from_args(OracleConfig, args)
    out = args.out or SHIPPED
    print(json.dumps({"oracle_train": dataclasses.asdict(cfg), "out": out}, indent=2))
    from ltbench.utils.dist import is_main

    train_oracle(cfg, out, progress=not args.quiet and is_main())
    if is_main():
        with open(os.path.join(out, "oracle.json")) as f:
            print(f.read())
    return 0


def _cmd_classify(args) -> int:
    """The mAP harness on a user's dataset: DenseNet121 on the train split (+ an augmented
    folder), scored on the test split; DDP under torchrun, rank 0 writes."""
    import numpy as np
    import torch

    from ltbench.data.csv_dataset import CsvImageDataset, ImageConfig
    from ltbench.data.presets import DATASETS, open_dataset
    from ltbench.data.rows import ConcatRows, RowFile, read_to_rows
    from ltbench.eval.classifier import ClassifierConfig, average_precisions, head_tail_map, predict, train_classifier, warm_start
    from ltbench.reproduce.provenance import metadata
    from ltbench.utils.dist import barrier, is_main
    from ltbench.utils.io import atomic_path, atomic_write_json

    if args.dataset not in DATASETS:
        raise KeyError(f"unknown dataset {args.dataset!r}; registered: {sorted(DATASETS)}")
    preset = DATASETS[args.dataset]
    cfg = config_from_args(ClassifierConfig, args)
    image = ImageConfig(size=args.image_size, channels=1, on_error="skip")
    data = os.path.join(args.out, "data")
    parts = {"train": lambda: open_dataset(args.dataset, args.data, split="train", image=image), "test": lambda: open_dataset(args.dataset, args.data, split="test", image=image)}
    if args.augmented:
        parts["augmented"] = lambda: CsvImageDataset(os.path.join(args.augmented, "labels.csv"), args.augmented, preset.classes, image=image)
    if is_main():  # rank 0 reads the images once; the others wait and open its files
        os.makedirs(data, exist_ok=True)
        for name, make in parts.items():
            if not os.path.exists(os.path.join(data, f"{name}.labels.npy")):  # written last: marks the split complete
                labels = read_to_rows(make(), os.path.join(data, f"{name}.npy"), progress=not args.quiet, desc=f"read {name}")
                with atomic_path(os.path.join(data, f"{name}.labels.npy")) as tmp:
                    np.save(tmp, labels, allow_pickle=False)
    barrier()
    x = {n: RowFile(os.path.join(data, f"{n}.npy")) for n in parts}
    y = {n: np.load(os.path.join(data, f"{n}.labels.npy")) for n in parts}
    train_x = ConcatRows(x["train"], x["augmented"]) if "augmented" in x else x["train"]
    train_y = np.concatenate([y["train"], y["augmented"]]) if "augmented" in y else y["train"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    init = warm_start(x["train"], y["train"], cfg, seed=args.seed, device=device, progress=not args.quiet and is_main()) if cfg.warm_steps else None
    net = train_classifier(train_x, train_y, cfg, seed=args.seed, device=device, progress=not args.quiet and is_main(), n_real=len(x["train"]), init=init)
    if is_main():
        ap = average_precisions(y["test"], predict(net, x["test"], cfg, device=device), preset.classes)
        res = {"dataset": args.dataset, "data": args.data, "augmented": args.augmented, "sizes": {n: len(v) for n, v in x.items()}, "classifier": dataclasses.asdict(cfg), "seed": args.seed, "average_precision": ap, "mean_ap": float(np.mean(list(ap.values())))}
        if preset.head and preset.tail:
            res.update(head_tail_map(ap, preset.head, preset.tail))
        res["metadata"] = metadata(args.seed)
        with atomic_path(os.path.join(args.out, "densenet121.pt")) as tmp:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp)
        atomic_write_json(os.path.join(args.out, "metrics.json"), res)
        print(json.dumps({k: res[k] for k in ("sizes", "mean_ap", "head_map", "tail_map") if k in res}))
        print(f"wrote {os.path.join(args.out, 'metrics.json')}")
    return 0


def _cmd_generate(args) -> int:
    import numpy as np

    from ltbench.data.classes import PAPER_CLASSES
    from ltbench.data.writer import write_image_folder
    from ltbench.prior.pipeline import load_prior

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else list(PAPER_CLASSES)
    prompts = [p for p in args.prompt for _ in range(args.n)]
    import torch

    from ltbench.utils.dist import gather_shares, is_main, my_share, sample_generator

    prior = load_prior(args.prior, device=args.device, precision=args.precision)
    mine = my_share(len(prompts))  # under torchrun: every W-th prompt; sample i's noise has its own seed
    noise = torch.stack([torch.randn(prior.latent_shape, generator=sample_generator(args.seed, int(i))) for i in mine]) if len(mine) else None
    with prior.count_unet() as cnt:
        part = prior.text_to_image([prompts[i] for i in mine], steps=args.steps, guidance=args.guidance, batch_size=args.batch_size, progress=not args.quiet, noise=noise) if len(mine) else torch.zeros((0, *prior.latent_shape))
    z = gather_shares({"z": part}, len(prompts))["z"]
    if not is_main():
        return 0
    images = prior.decode(z)
    # a prompt's labels are the class names it contains (the t2i baseline's convention)
    labels = np.array([[int(c.lower() in p.lower()) for c in classes] for p in prompts], dtype=np.uint8)
    write_image_folder(args.out, images, labels, classes, extra={"prompt": prompts}, latents=z.numpy(), overwrite=args.overwrite)
    print(f"wrote {len(prompts)} images to {args.out} ({cnt.rows / max(len(prompts), 1):.0f} UNet evaluations per sample)")
    return 0


def _split_list(text):
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _cmd_train_il(args) -> int:
    from ltbench.data.store import LatentStore
    from ltbench.method.il import ILConfig, train_il

    cfg = config_from_args(ILConfig, args)
    train = LatentStore(args.latents, split=args.split)
    val = LatentStore(args.latents, split=args.val_split) if args.val_split else None
    print(json.dumps({"train_il": dataclasses.asdict(cfg), "train_rows": len(train), "val_rows": len(val) if val else 0}, indent=2))
    train_il(train, val, cfg, args.out, progress=not args.quiet)
    print(f"wrote iterated-learning run {args.out} (model.pt, log.jsonl, checkpoints/)")
    return 0


def _cmd_augment(args) -> int:

    from ltbench.augment.fsa_il import generate_fusions
    from ltbench.data.presets import DATASETS
    from ltbench.data.store import LatentStore
    from ltbench.data.writer import write_image_folder
    from ltbench.method.cam import compute_cams
    from ltbench.method.fusion import FusionConfig
    from ltbench.method.il import load_il
    from ltbench.prior.pipeline import load_prior
    from ltbench.prior.vae import vae_identity

    if args.method != "fsa-il" and args.steps:
        raise ValueError(f"--steps (refinement) applies to fsa-il only, not --method {args.method}")
    if args.method == "fsa-il" and not args.il:
        raise ValueError("--method fsa-il needs --il (an iterated-learning run folder from `ltbench train-il`)")
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    cfg = config_from_args(FusionConfig, args, refine_steps=args.steps)
    store = LatentStore(args.latents, split=args.split)
    classes = list(store.classes)
    preset = DATASETS["phantom"]
    head, tail = _split_list(args.head) or list(preset.head), _split_list(args.tail) or list(preset.tail)
    unknown = [c for c in head + tail if c not in classes]
    if unknown:
        raise KeyError(f"classes {unknown} are not in the latent store (it has {classes})")
    prior = load_prior(args.prior, device=args.device)
    enc = store.manifest["identity"]["vae"]["weights_sha256"]
    if vae_identity(prior.path)["weights_sha256"] != enc:
        raise ValueError(f"the latents in {args.latents} were encoded with another VAE than the prior {prior.path}'s; decode with the prior that encoded them")
    if args.method != "fsa-il":
        return _augment_registered(args, cfg, store, classes, head, tail, prior)
    from ltbench.utils.dist import barrier, is_main

    model = load_il(args.il)
    if is_main():
        print(json.dumps({"augment": dataclasses.asdict(cfg), "method": args.method, "head": head, "tail": tail, "rows": len(store)}, indent=2))
        cams, scores = compute_cams(model, store, os.path.join(args.out + ".work", "cams"), progress=not args.quiet)
    barrier()  # under torchrun: rank 0 computes the CAMs, the others read them
    if not is_main():
        cams, scores = compute_cams(model, store, os.path.join(args.out + ".work", "cams"), progress=False)
    meta = type("Record", (), {})()
    with prior.count_unet() as cnt:
        z, y = generate_fusions(model, store, cams, scores, classes, head, tail, cfg, prior=prior, record=meta, progress=not args.quiet)
    if not is_main():
        return 0
    images = prior.decode(z)
    rows = store.rows
    p = meta.partners_
    extra = {"tail_row": rows[p[:, 0]], "partner_row": rows[p[:, 1]], "tail_class": [classes[c] for c in p[:, 3]], "partner_head_class": [classes[c] for c in p[:, 2]]}
    write_image_folder(args.out, images, y, classes, extra=extra, latents=z.numpy(), overwrite=args.overwrite)
    import shutil

    shutil.rmtree(args.out + ".work", ignore_errors=True)
    print(f"wrote {len(z)} fsa-il@{args.steps} samples to {args.out} ({cnt.rows / max(len(z), 1):.0f} UNet evaluations per sample)")
    return 0


def _augment_registered(args, cfg, store, classes, head, tail, prior) -> int:
    """Any registered augmenter other than fsa-il: fit_generate on the split's latents, decode
    the new latents with the prior, write the image folder."""
    import inspect

    import torch

    from ltbench.augment import augmenter_class
    from ltbench.data.writer import write_image_folder

    if len(store) == 0:
        raise ValueError(f"split {args.split!r} of {args.latents} has no rows")
    X = torch.stack([store[i][0] for i in range(len(store))])
    y = store.labels[store.rows].astype("uint8")
    params = {"classes": classes, "head": head, "tail": tail, "n_per_class": cfg.n_per_class, "seed": cfg.seed}
    cls = augmenter_class(args.method)
    accepted = inspect.signature(cls.__init__).parameters
    if "prior" in accepted or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        params["prior"] = prior  # t2i samples with it; others ignore it
    aug = cls(**params)
    print(json.dumps({"augment": args.method, "n_per_class": cfg.n_per_class, "seed": cfg.seed, "head": head, "tail": tail, "rows": len(store)}, indent=2))
    from ltbench.utils.dist import is_main

    with prior.count_unet() as cnt:
        z, y_new = aug.fit_generate(X, y)  # t2i shards its samples over a torchrun group; the others are cheap and run whole
    if not is_main():
        return 0
    if len(z) == 0:
        print(f"{args.method} generates no samples; nothing written")
        return 0
    images = prior.decode(z)
    write_image_folder(args.out, images, y_new, classes, latents=z.numpy(), overwrite=args.overwrite)
    print(f"wrote {len(z)} {args.method} samples to {args.out} ({cnt.rows / max(len(z), 1):.0f} UNet evaluations per sample)")
    return 0


def _cmd_presets(args) -> int:
    from ltbench.presets import describe

    rows = describe()
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        sets = ", ".join(f"{k}={v!r}" for k, v in r["sets"].items() if k != "name") or "(the defaults)"
        print(f"{r['kind']:8s} {r['name']:20s} {sets}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.phantom import PhantomConfig
    from ltbench.data.presets import DATASETS
    from ltbench.eval.oracle import OracleConfig
    from ltbench.eval.classifier import ClassifierConfig
    from ltbench.prior.encode import EncodeConfig
    from ltbench.augment import augmenter_names
    from ltbench.method.fusion import FusionConfig
    from ltbench.method.il import ILConfig
    from ltbench.prior.quality import QualityConfig
    from ltbench.prior.train import PRESETS, PriorTrainConfig

    augmenters = augmenter_names()
    p = argparse.ArgumentParser(prog="ltbench", description="Long-tail augmentation benchmark in the latent space of diffusion models.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="create or inspect datasets", description="Create or inspect datasets.")
    dsub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    ph = dsub.add_parser("phantom", help="write CXR-Phantom-LT (PNG images, masks, labels.csv)", description="Write CXR-Phantom-LT, the embedded long-tailed chest X-ray phantom, as PNGs + labels.csv + per-finding masks.")
    ph.add_argument("--out", required=True, help="output folder (built as OUT.partial, renamed when complete)")
    ph.add_argument("--batch-size", type=int, default=256, help="images rendered per batch (default: 256)")
    ph.add_argument("--overwrite", action="store_true", help="replace OUT if it holds something else")
    ph.add_argument("--layout", default="phantom", choices=("phantom", "mimic-cxr-lt"), help="phantom: images/ + labels.csv with a split column; mimic-cxr-lt: MIMIC-CXR-JPG folders and the three MIMIC-CXR-LT label CSVs, read by the mimic-cxr-lt(-paper) dataset presets (default: phantom)")
    ph.add_argument("--upsample-to", type=int, default=None, metavar="PX", help="write the images upsampled (bilinear) to PX, rendered at --size (e.g. --size 128 --upsample-to 512: the paper's 512 px at a fraction of the rendering cost)")
    ph.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(ph, PhantomConfig, group="phantom")
    ph.set_defaults(func=_cmd_data_phantom)

    enc = sub.add_parser("encode", help="encode a dataset into a latent store with a diffusers VAE", description="Encode a dataset with the VAE of a local diffusers folder (PATH/vae) into a sharded, memory-mapped, resumable latent store.")
    enc.add_argument("--data", required=True, help="dataset folder (images + labels CSV)")
    enc.add_argument("--prior", required=True, help="local diffusers pipeline folder (uses PATH/vae) or a VAE folder")
    enc.add_argument("--out", required=True, help="latent store folder (resumed if it already holds this encode)")
    enc.add_argument("--dataset", default="phantom", choices=sorted(DATASETS), help="dataset preset (default: phantom)")
    enc.add_argument("--csv", default=None, help="labels CSV (default: the preset's file inside --data)")
    enc.add_argument("--split", default=None, help="encode only this split (default: all rows)")
    enc.add_argument("--classes", default=None, help="comma-separated class names (default: the preset's)")
    enc.add_argument("--size", type=int, default=None, help="input size in px (default: the VAE's sample_size)")
    enc.add_argument("--on-error", default=ImageConfig.on_error, choices=("raise", "skip"), help="unreadable image: fail, or skip and report it (default: raise)")
    enc.add_argument("--uncertain", default=ImageConfig.uncertain, choices=("zero", "one"), help="map -1 labels to 0 or 1 (default: zero)")
    enc.add_argument("--overwrite", action="store_true", help="replace OUT if it holds another store")
    enc.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(enc, EncodeConfig, group="encode")
    enc.set_defaults(func=_cmd_encode)

    prior = sub.add_parser("prior", help="train or evaluate a diffusion prior", description="Train or evaluate a diffusion prior.")
    psub = prior.add_subparsers(dest="prior_command", metavar="ACTION", required=True)
    pt = psub.add_parser("train", help="train the phantom prior (a small Stable-Diffusion-format pipeline)", description="Train the phantom prior on CXR-Phantom-LT: VAE, then UNet + text encoder. Seeded, checkpointed, resumable.")
    pt.add_argument("--preset", default="phantom", choices=sorted(PRESETS), help="training preset (default: phantom)")
    pt.add_argument("--out", default=None, help="pipeline folder to write (default: the shipped ltbench/prior/<preset>)")
    pt.add_argument("--work-dir", default=None, help="checkpoints, for resuming (default: runs/prior-<preset>)")
    pt.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(pt, PriorTrainConfig, group="overrides of the preset", defaults_none=True)
    pt.set_defaults(func=_cmd_prior_train)

    pe = psub.add_parser("evaluate", help="measure a prior's quality on CXR-Phantom-LT", description="VAE reconstruction error on held-out phantom images, prompt fidelity judged by a classifier trained on real phantom images, and a sample grid; writes quality.json, sample_grid.png and README.md.")
    pe.add_argument("--prior", default="phantom", help="prior folder or 'phantom' (default: phantom)")
    pe.add_argument("--out", default=None, help="where to write (default: the prior's own folder)")
    pe.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    pe.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"), help="auto = fp32 on CPU, bf16 on GPU")
    pe.add_argument("--oracle", default="phantom", help="oracle for the autoencoder's round-trip fidelity: 'phantom' (shipped), a folder or file, or 'none' (default: phantom)")
    pe.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(pe, QualityConfig, group="evaluation")
    pe.set_defaults(func=_cmd_prior_evaluate)

    orc = sub.add_parser("oracle", help="train the phantom's oracle classifier", description="The oracle judges label fidelity and gives the phantom's domain FID features.")
    osub = orc.add_subparsers(dest="oracle_command", metavar="ACTION", required=True)
    ot = osub.add_parser("train", help="train the oracle on a large fresh phantom sample", description="Train the oracle (SmallCNN, class-balanced BCE) on a large phantom sample of its own seed; writes oracle.pt and oracle.json (config, per-class test AP on the benchmark's test split).")
    ot.add_argument("--out", default=None, help="folder to write (default: the shipped ltbench/eval/phantom_oracle)")
    ot.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(ot, OracleConfig, group="oracle")
    ot.set_defaults(func=_cmd_oracle_train)

    cl = sub.add_parser("classify", help="train and score the DenseNet121 mAP harness on a dataset (+ an augmented folder)", description="The benchmark's head/tail mAP harness on your data: DenseNet121 trained on the train split plus an optional augmented folder (the output of `ltbench augment` or `ltbench generate`), scored by per-class average precision on the test split. Under torchrun it trains in DistributedDataParallel (rank 0 reads the images and writes); images are read once into OUT/data and streamed from there.")
    cl.add_argument("--dataset", required=True, help=f"registered dataset ({', '.join(sorted(DATASETS))})")
    cl.add_argument("--data", required=True, help="the dataset's folder (images + label CSVs)")
    cl.add_argument("--augmented", default=None, help="a folder of generated images (images/ + labels.csv) added to the train split")
    cl.add_argument("--out", required=True, help="where to write metrics.json, densenet121.pt and the read images (OUT/data, reused by a rerun)")
    cl.add_argument("--image-size", type=int, default=64, help="px the images are read at before the classifier's own resize (default: 64; the paper: 512)")
    cl.add_argument("--seed", type=int, default=0, help="initialisation and batch order (default: 0)")
    cl.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(cl, ClassifierConfig, group="classifier")
    cl.set_defaults(func=_cmd_classify)

    gen = sub.add_parser("generate", help="text-to-image samples from a prior", description="Sample images from a diffusion prior (a local Stable Diffusion folder or 'phantom') from class-name prompts; writes the dataset layout (images/, labels.csv) plus latents.npy.")
    gen.add_argument("--prior", default="phantom", help="prior folder or 'phantom' (default: phantom)")
    gen.add_argument("--prompt", action="append", required=True, help="a prompt, e.g. 'Cardiomegaly' (repeatable)")
    gen.add_argument("--n", "--per-prompt", dest="n", type=int, default=8, help="samples per prompt (default: 8); under torchrun spell it --per-prompt (torchrun reads --n as its own --nnodes/--nproc-per-node)")
    gen.add_argument("--steps", type=int, default=ROENTGEN_STEPS, help=f"sampling steps (default: {ROENTGEN_STEPS}, RoentGen's card)")
    gen.add_argument("--guidance", type=float, default=ROENTGEN_GUIDANCE, help=f"classifier-free guidance scale (default: {ROENTGEN_GUIDANCE})")
    gen.add_argument("--seed", type=int, default=0, help="seed of the initial noise; sample i draws its own from (seed, i), so samples do not depend on --batch-size or on the number of torchrun processes (default: 0)")
    gen.add_argument("--batch-size", type=int, default=16, help="samples per pipeline call (default: 16)")
    gen.add_argument("--classes", default=None, help="comma-separated class names for the labels CSV (default: the paper's ten)")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    gen.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"), help="auto = fp32 on CPU, bf16 on GPU")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_cmd_generate)

    il = sub.add_parser("train-il", help="iterated learning on a latent store (the method's stage 1)", description="Train S, D and C by iterated learning on a latent store; checkpoints per generation (a killed run resumes), losses and validation mAP in log.jsonl.")
    il.add_argument("--latents", required=True, help="latent store (from `ltbench encode`)")
    il.add_argument("--out", required=True, help="run folder")
    il.add_argument("--split", default="train", help="split to train on (default: train)")
    il.add_argument("--val-split", default="val", help="split to validate on, '' for none (default: val)")
    il.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(il, ILConfig, group="iterated learning")
    il.set_defaults(func=_cmd_train_il)

    au = sub.add_parser("augment", help="generate tail-class samples with any registered augmenter", description="Generate tail-class samples from a latent store with a registered augmenter and decode them with the prior; writes images/, labels.csv (dataset layout) and latents.npy. fsa-il fuses tail and head examples in the learned sparse space and optionally refines with k diffusion steps; the others (none, oversample, smote, t2i, and any installed plug-in of the ltbench.augmenters entry-point group) run their fit_generate on the split's latents.")
    au.add_argument("--method", default="fsa-il", choices=augmenters, help="augmenter (default: fsa-il)")
    au.add_argument("--latents", required=True, help="latent store")
    au.add_argument("--il", default=None, help="iterated-learning run folder (from `ltbench train-il`); fsa-il only")
    au.add_argument("--steps", type=int, default=0, help="refinement steps k (the paper's @k; default 0)")
    au.add_argument("--prior", default="phantom", help="the prior that encoded the latents: decodes and refines (default: phantom)")
    au.add_argument("--split", default="train", help="split whose examples are fused (default: train)")
    au.add_argument("--head", default=None, help="comma-separated head classes (default: the paper's five)")
    au.add_argument("--tail", default=None, help="comma-separated tail classes (default: the paper's five)")
    au.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    au.add_argument("--out", required=True, help="output folder")
    au.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    au.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(au, FusionConfig, exclude=("refine_steps",), group="fusion")
    au.set_defaults(func=_cmd_augment)

    pr = sub.add_parser("presets", help="list every named preset and what it sets", description="List every named preset (datasets, Table 1 runs, iterated learning, prior training) with the fields it sets beyond its config's defaults.")
    pr.add_argument("--kind", choices=["dataset", "table1", "il", "prior"], default=None, help="only this kind")
    pr.add_argument("--json", action="store_true", help="machine-readable output")
    pr.set_defaults(func=_cmd_presets)
    return p


# commands that split their work over a torchrun process group (data-parallel training,
# sharded encoding and generation); the others run whole in every process
DISTRIBUTED_COMMANDS = ("encode", "train-il", "augment", "generate", "classify", "prior train", "oracle train")


def _distributed(args) -> bool:
    sub = getattr(args, "prior_command", None) or getattr(args, "oracle_command", None)
    return args.command in DISTRIBUTED_COMMANDS or f"{args.command} {sub}" in DISTRIBUTED_COMMANDS


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if _distributed(args):
            from ltbench.utils.dist import init_distributed

            init_distributed()  # under torchrun: join the group (gloo on CPU, NCCL on GPUs)
        rc = args.func(args)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        # Expected failures (bad paths, columns, settings) end in one clear line, not a traceback.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ltbench {args.command}: error: {msg}", file=sys.stderr)
        return 2
    if _distributed(args):
        from ltbench.utils.dist import finish_distributed

        finish_distributed()
    return rc


if __name__ == "__main__":
    sys.exit(main())
