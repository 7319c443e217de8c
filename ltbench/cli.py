"""``ltbench`` command line: argument parsing only; every command calls into a layer."""

import argparse
import dataclasses
import json
import logging
import os
import sys

from ltbench.config import add_config_args, config_from_args


def _cmd_data_phantom(args) -> int:
    from ltbench.data.phantom import PhantomConfig, write_phantom

    cfg = config_from_args(PhantomConfig, args)
    print(json.dumps({"phantom": dataclasses.asdict(cfg)}, indent=2))
    write_phantom(cfg, args.out, batch_size=args.batch_size, progress=not args.quiet, overwrite=args.overwrite)
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


def build_parser() -> argparse.ArgumentParser:
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.phantom import PhantomConfig
    from ltbench.data.presets import DATASETS
    from ltbench.prior.encode import EncodeConfig

    p = argparse.ArgumentParser(prog="ltbench", description="Long-tail augmentation benchmark in the latent space of diffusion models.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="create or inspect datasets", description="Create or inspect datasets.")
    dsub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    ph = dsub.add_parser("phantom", help="write CXR-Phantom-LT (PNG images, masks, labels.csv)", description="Write CXR-Phantom-LT, the embedded long-tailed chest X-ray phantom, as PNGs + labels.csv + per-finding masks.")
    ph.add_argument("--out", required=True, help="output folder (built as OUT.partial, renamed when complete)")
    ph.add_argument("--batch-size", type=int, default=256, help="images rendered per batch (default: 256)")
    ph.add_argument("--overwrite", action="store_true", help="replace OUT if it holds something else")
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
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, RuntimeError) as exc:
        # Expected failures (bad paths, columns, settings) end in one clear line, not a traceback.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ltbench {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
