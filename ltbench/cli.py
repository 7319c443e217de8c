"""``ltbench`` command line: argument parsing and dispatch only. Every command calls one
function of the layer it belongs to (harnesses with loops, barriers or caches live there) and
prints what it returns; options come from the configs' fields (``ltbench.config``) and the
common ones from shared parent parsers (``ltbench.utils.cli``). Expected failures end in one
line and exit status 2."""

import argparse
import dataclasses
import json
import sys

from ltbench.config import ROENTGEN_GUIDANCE, ROENTGEN_STEPS, add_config_args, config_from_args
from ltbench.utils.cli import parent, run_command, setup_logging


def _split_list(text):
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _cmd_data_phantom(args) -> int:
    from ltbench.data.phantom import PhantomConfig, write_phantom

    cfg = config_from_args(PhantomConfig, args)
    print(json.dumps({"phantom": dataclasses.asdict(cfg)}, indent=2))
    write_phantom(cfg, args.out, batch_size=args.batch_size, progress=not args.quiet, overwrite=args.overwrite, layout=args.layout, upsample_to=args.upsample_to)
    print(f"wrote CXR-Phantom-LT ({cfg.n} images, {cfg.size}px) to {args.out}")
    return 0


def _cmd_encode(args) -> int:
    from ltbench.prior.encode import EncodeConfig, encode_folder

    cfg = config_from_args(EncodeConfig, args)
    s = encode_folder(args.dataset, args.data, args.prior, args.out, cfg, split=args.split, csv=args.csv, classes=_split_list(args.classes), size=args.size, on_error=args.on_error, uncertain=args.uncertain, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote latent store {args.out} ({s['rows']} rows)")
    return 0


def _cmd_prior_train(args) -> int:
    import os

    from ltbench.prior.train import PRESETS, PriorTrainConfig, train_prior
    from ltbench.utils.dist import is_main

    base = dataclasses.asdict(PRESETS[args.preset])
    cfg = PriorTrainConfig(**{k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()})
    print(json.dumps({"prior_train": dataclasses.asdict(cfg), "preset": args.preset}, indent=2))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "prior", args.preset)
    train_prior(cfg, out, args.work_dir or os.path.join("runs", f"prior-{args.preset}"), progress=not args.quiet and is_main())
    if is_main():
        print(f"wrote prior {out}")
    return 0


def _cmd_prior_evaluate(args) -> int:
    from ltbench.prior.quality import QualityConfig, run_evaluate

    cfg = config_from_args(QualityConfig, args)
    print(json.dumps({"prior_evaluate": dataclasses.asdict(cfg), "prior": args.prior}, indent=2))
    print(json.dumps(run_evaluate(args.prior, args.out, cfg, oracle=args.oracle, device=args.device, precision=args.precision, command=args.command_line, progress=not args.quiet), indent=2))
    return 0


def _cmd_oracle_train(args) -> int:
    import os

    from ltbench.eval.oracle import SHIPPED, OracleConfig, train_oracle
    from ltbench.utils.dist import is_main

    cfg = config_from_args(OracleConfig, args)
    out = args.out or SHIPPED
    print(json.dumps({"oracle_train": dataclasses.asdict(cfg), "out": out}, indent=2))
    train_oracle(cfg, out, progress=not args.quiet and is_main())
    if is_main():
        with open(os.path.join(out, "oracle.json")) as f:
            print(f.read())
    return 0


def _cmd_classify(args) -> int:
    import os

    from ltbench.eval.classifier import ClassifierConfig
    from ltbench.eval.classify import run_classify

    res = run_classify(args.dataset, args.data, args.out, config_from_args(ClassifierConfig, args), augmented=args.augmented, image_size=args.image_size, seed=args.seed, device=args.device, progress=not args.quiet)
    if res is not None:
        print(json.dumps({k: res[k] for k in ("sizes", "mean_ap", "head_map", "tail_map") if k in res}))
        print(f"wrote {os.path.join(args.out, 'metrics.json')}")
    return 0


def _cmd_generate(args) -> int:
    from ltbench.prior.generate import run_generate

    res = run_generate(args.prompt, args.out, n=args.n, classes=_split_list(args.classes), prior=args.prior, steps=args.steps, guidance=args.guidance, seed=args.seed, batch_size=args.batch_size, device=args.device, precision=args.precision, overwrite=args.overwrite, progress=not args.quiet)
    if res is not None:
        print(f"wrote {res['n']} images to {res['out']} ({res['unet_evals_per_sample']:.0f} UNet evaluations per sample)")
    return 0


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
    from ltbench.augment.harness import run_augment
    from ltbench.method.fusion import FusionConfig

    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    cfg = config_from_args(FusionConfig, args, refine_steps=args.steps)
    res = run_augment(args.method, args.latents, args.out, cfg, il=args.il, prior=args.prior, split=args.split, head=_split_list(args.head), tail=_split_list(args.tail), device=args.device, overwrite=args.overwrite, progress=not args.quiet)
    if res is None:
        return 0
    if res["n"] == 0:
        print(f"{args.method} generates no samples; nothing written")
    else:
        label = f"fsa-il@{args.steps}" if args.method == "fsa-il" else args.method
        print(f"wrote {res['n']} {label} samples to {res['out']} ({res['unet_evals_per_sample']:.0f} UNet evaluations per sample)")
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
    from ltbench.augment import augmenter_names
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.phantom import PhantomConfig
    from ltbench.data.presets import DATASETS
    from ltbench.eval.classifier import ClassifierConfig
    from ltbench.eval.oracle import OracleConfig
    from ltbench.method.fusion import FusionConfig
    from ltbench.method.il import ILConfig
    from ltbench.prior.encode import EncodeConfig
    from ltbench.prior.quality import QualityConfig
    from ltbench.prior.train import PRESETS, PriorTrainConfig

    quiet, overwrite, device, precision = parent("quiet"), parent("overwrite"), parent("device"), parent("precision")
    p = argparse.ArgumentParser(prog="ltbench", description="Long-tail augmentation benchmark in the latent space of diffusion models.", parents=[parent("verbose")])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="create or inspect datasets", description="Create or inspect datasets.")
    dsub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    ph = dsub.add_parser("phantom", parents=[quiet, overwrite], help="write CXR-Phantom-LT (PNG images, masks, labels.csv)", description="Write CXR-Phantom-LT, the embedded long-tailed chest X-ray phantom, as PNGs + labels.csv + per-finding masks.")
    ph.add_argument("--out", required=True, help="output folder (built as OUT.partial, renamed when complete)")
    ph.add_argument("--batch-size", type=int, default=256, help="images rendered per batch (default: 256)")
    ph.add_argument("--layout", default="phantom", choices=("phantom", "mimic-cxr-lt"), help="phantom: images/ + labels.csv with a split column; mimic-cxr-lt: MIMIC-CXR-JPG folders and the three MIMIC-CXR-LT label CSVs, read by the mimic-cxr-lt(-paper) dataset presets (default: phantom)")
    ph.add_argument("--upsample-to", type=int, default=None, metavar="PX", help="write the images upsampled (bilinear) to PX, rendered at --size (e.g. --size 128 --upsample-to 512: the paper's 512 px at a fraction of the rendering cost)")
    add_config_args(ph, PhantomConfig, group="phantom")
    ph.set_defaults(func=_cmd_data_phantom)

    enc = sub.add_parser("encode", parents=[quiet, overwrite], help="encode a dataset into a latent store with a diffusers VAE", description="Encode a dataset with the VAE of a local diffusers folder (PATH/vae) into a sharded, memory-mapped, resumable latent store.")
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
    add_config_args(enc, EncodeConfig, group="encode")
    enc.set_defaults(func=_cmd_encode)

    prior = sub.add_parser("prior", help="train or evaluate a diffusion prior", description="Train or evaluate a diffusion prior.")
    psub = prior.add_subparsers(dest="prior_command", metavar="ACTION", required=True)
    pt = psub.add_parser("train", parents=[quiet], help="train the phantom prior (a small Stable-Diffusion-format pipeline)", description="Train the phantom prior on CXR-Phantom-LT: VAE, then UNet + text encoder. Seeded, checkpointed, resumable.")
    pt.add_argument("--preset", default="phantom", choices=sorted(PRESETS), help="training preset (default: phantom)")
    pt.add_argument("--out", default=None, help="pipeline folder to write (default: the shipped ltbench/prior/<preset>)")
    pt.add_argument("--work-dir", default=None, help="checkpoints, for resuming (default: runs/prior-<preset>)")
    add_config_args(pt, PriorTrainConfig, group="overrides of the preset", defaults_none=True)
    pt.set_defaults(func=_cmd_prior_train)

    pe = psub.add_parser("evaluate", parents=[quiet, device, precision], help="measure a prior's quality on CXR-Phantom-LT", description="VAE reconstruction error on held-out phantom images, prompt fidelity judged by a classifier trained on real phantom images, the autoencoder's round-trip fidelity per class, and a sample grid; writes quality.json, sample_grid.png and README.md.")
    pe.add_argument("--prior", default="phantom", help="prior folder or 'phantom' (default: phantom)")
    pe.add_argument("--out", default=None, help="where to write (default: the prior's own folder)")
    pe.add_argument("--oracle", default="phantom", help="oracle for the autoencoder's round-trip fidelity: 'phantom' (shipped), a folder or file, or 'none' (default: phantom)")
    add_config_args(pe, QualityConfig, group="evaluation")
    pe.set_defaults(func=_cmd_prior_evaluate)

    orc = sub.add_parser("oracle", help="train the phantom's oracle classifier", description="The oracle judges label fidelity and gives the phantom's domain FID features.")
    osub = orc.add_subparsers(dest="oracle_command", metavar="ACTION", required=True)
    ot = osub.add_parser("train", parents=[quiet], help="train the oracle on a large fresh phantom sample", description="Train the oracle (SmallCNN, class-balanced BCE) on a large phantom sample of its own seed; writes oracle.pt and oracle.json (config, per-class test AP on the benchmark's test split).")
    ot.add_argument("--out", default=None, help="folder to write (default: the shipped ltbench/eval/phantom_oracle)")
    add_config_args(ot, OracleConfig, group="oracle")
    ot.set_defaults(func=_cmd_oracle_train)

    cl = sub.add_parser("classify", parents=[quiet, device], help="train and score the DenseNet121 mAP harness on a dataset (+ an augmented folder)", description="The benchmark's head/tail mAP harness on your data: DenseNet121 trained on the train split plus an optional augmented folder (the output of `ltbench augment` or `ltbench generate`), scored by per-class average precision on the test split. Under torchrun it trains in DistributedDataParallel (rank 0 reads the images and writes); images are read once into OUT/data and streamed from there.")
    cl.add_argument("--dataset", required=True, help=f"registered dataset ({', '.join(sorted(DATASETS))})")
    cl.add_argument("--data", required=True, help="the dataset's folder (images + label CSVs)")
    cl.add_argument("--augmented", default=None, help="a folder of generated images (images/ + labels.csv) added to the train split")
    cl.add_argument("--out", required=True, help="where to write metrics.json, densenet121.pt and the read images (OUT/data, reused by a rerun on the same inputs)")
    cl.add_argument("--image-size", type=int, default=64, help="px the images are read at before the classifier's own resize (default: 64; the paper: 512)")
    cl.add_argument("--seed", type=int, default=0, help="initialisation and batch order (default: 0)")
    add_config_args(cl, ClassifierConfig, group="classifier")
    cl.set_defaults(func=_cmd_classify)

    gen = sub.add_parser("generate", parents=[quiet, overwrite, device, precision], help="text-to-image samples from a prior", description="Sample images from a diffusion prior (a local Stable Diffusion folder or 'phantom') from class-name prompts; writes the dataset layout (images/, labels.csv) plus latents.npy.")
    gen.add_argument("--prior", default="phantom", help="prior folder or 'phantom' (default: phantom)")
    gen.add_argument("--prompt", action="append", required=True, help="a prompt, e.g. 'Cardiomegaly' (repeatable)")
    gen.add_argument("--n", "--per-prompt", dest="n", type=int, default=8, help="samples per prompt (default: 8); under torchrun spell it --per-prompt (torchrun reads --n as its own --nnodes/--nproc-per-node)")
    gen.add_argument("--steps", type=int, default=ROENTGEN_STEPS, help=f"sampling steps (default: {ROENTGEN_STEPS}, RoentGen's card)")
    gen.add_argument("--guidance", type=float, default=ROENTGEN_GUIDANCE, help=f"classifier-free guidance scale (default: {ROENTGEN_GUIDANCE})")
    gen.add_argument("--seed", type=int, default=0, help="seed of the initial noise; sample i draws its own from (seed, i), so samples do not depend on --batch-size or on the number of torchrun processes (default: 0)")
    gen.add_argument("--batch-size", type=int, default=16, help="samples per pipeline call (default: 16)")
    gen.add_argument("--classes", default=None, help="comma-separated class names for the labels CSV (default: the paper's ten)")
    gen.add_argument("--out", required=True, help="output folder")
    gen.set_defaults(func=_cmd_generate)

    il = sub.add_parser("train-il", parents=[quiet], help="iterated learning on a latent store (the method's stage 1)", description="Train S, D and C by iterated learning on a latent store; checkpoints per generation (a killed run resumes), losses and validation mAP in log.jsonl.")
    il.add_argument("--latents", required=True, help="latent store (from `ltbench encode`)")
    il.add_argument("--out", required=True, help="run folder")
    il.add_argument("--split", default="train", help="split to train on (default: train)")
    il.add_argument("--val-split", default="val", help="split to validate on, '' for none (default: val)")
    add_config_args(il, ILConfig, group="iterated learning")
    il.set_defaults(func=_cmd_train_il)

    au = sub.add_parser("augment", parents=[quiet, overwrite, device], help="generate tail-class samples with any registered augmenter", description="Generate tail-class samples from a latent store with a registered augmenter and decode them with the prior; writes images/, labels.csv (dataset layout) and latents.npy. fsa-il fuses tail and head examples in the learned sparse space (CAMs by --cam on --cam-layers) and optionally refines with k diffusion steps; the others (none, oversample, smote, t2i, and any installed plug-in of the ltbench.augmenters entry-point group) run their fit_generate on the split's latents.")
    au.add_argument("--method", default="fsa-il", choices=augmenter_names(), help="augmenter (default: fsa-il)")
    au.add_argument("--latents", required=True, help="latent store")
    au.add_argument("--il", default=None, help="iterated-learning run folder (from `ltbench train-il`); fsa-il only")
    au.add_argument("--steps", type=int, default=0, help="refinement steps k (the paper's @k; default 0)")
    au.add_argument("--prior", default="phantom", help="the prior that encoded the latents: decodes and refines (default: phantom)")
    au.add_argument("--split", default="train", help="split whose examples are fused (default: train)")
    au.add_argument("--head", default=None, help="comma-separated head classes (default: the paper's five)")
    au.add_argument("--tail", default=None, help="comma-separated tail classes (default: the paper's five)")
    au.add_argument("--out", required=True, help="output folder")
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


def _run(args) -> int:
    from ltbench.utils.dist import finish_distributed, init_distributed

    if not _distributed(args):
        return args.func(args)
    init_distributed()  # under torchrun: join the group
    rc = args.func(args)
    finish_distributed()
    return rc


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = "ltbench " + " ".join(sys.argv[1:] if argv is None else argv)  # recorded in what a command measures
    setup_logging(args.verbose)
    return run_command(f"ltbench {args.command}", _run, args)


if __name__ == "__main__":
    sys.exit(main())
