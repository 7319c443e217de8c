import argparse
import sys

NOT_YET = (
    "ltbench.reproduce: '{exp}' is not implemented yet. It needs the diffusion prior, the "
    "method (fsa-il), the baselines and the FID/mAP harnesses, which are still open issues.\n"
    "Available now: `ltbench data phantom` (CXR-Phantom-LT) and `ltbench encode` (latent store)."
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ltbench.reproduce", description="Reproduce the paper's experiments.")
    p.add_argument("experiment", choices=["table1"], help="experiment to run")
    args = p.parse_args(argv)
    print(NOT_YET.format(exp=args.experiment), file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
