"""The ``synthaug`` command line: one subcommand per stage, plus the demo.

    synthaug finetune         --config paper/base64_finetune [--config.train.steps=1000]
    synthaug sample           --config paper/sample_final --config.out_dir=/data/synthetic
    synthaug train-classifier --config paper/resnet50:mixed
    synthaug evaluate         --config paper/evaluate_fid
    synthaug fid-stats        --config paper/fid_stats:val256 --config.out=val256.npz
    synthaug report           --config.inputs=run1,run2 --config.out=report.md
    synthaug demo             --out demo_out [--quick]
    synthaug configs          # list the configs shipped with the package
    synthaug plan             --config paper/base64_finetune   # per-device memory
    synthaug import-weights   --from adm|deepfloyd-if SRC --out DIR [--preset NAME]

``--config`` takes ``path/to/file.py[:variant]`` or a config name under the package's
``configs/`` directory; ``--config.key=value`` (or ``--config.key value``) overrides one
key. Bad input (an unknown config key, a missing checkpoint or data directory, an unknown
class name) is reported in one line on stderr with exit code 2, before any output is
written. Set ``SYNTHAUG_TRACEBACK=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from synthaug.pipeline.errors import ConfigError, PipelineError

__all__ = ["main", "split_config_args"]

EXIT_BAD_INPUT = 2

_STAGE_HELP = {
    "finetune": "train or fine-tune one diffusion stage (base or super-resolution)",
    "sample": "sample a class-balanced synthetic data set through a cascade (resumable)",
    "train-classifier": "train a classifier on real, synthetic or mixed data",
    "evaluate": "FID, Inception Score, CAS and accuracy",
    "report": "a Markdown report of finished stages",
    "demo": "the whole pipeline on the embedded digits data, on a CPU",
    "fid-stats": "FID reference statistics of a real ImageNet split (ADM's preprocessing and .npz)",
}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage over several lines; keep one.
        raise ConfigError(f"{self.prog}: {message}")


def split_config_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``--config.key=value`` / ``--config.key value`` overrides from other args.

    Returns:
      (the remaining arguments, the overrides as ``key=value`` strings).
    """
    rest: list[str] = []
    overrides: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a.startswith("--config."):
            body = a[len("--config.") :]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise ConfigError(f"override {a} has no value; expected {a}=VALUE")
                body = f"{body}={argv[i + 1]}"
                i += 1
            overrides.append(body)
        else:
            rest.append(a)
        i += 1
    return rest, overrides


def _build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="synthaug", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", parser_class=_OneLineParser)
    for name, help_ in _STAGE_HELP.items():
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--config", default=None, help="path.py[:variant] or a config name")
        if name == "demo":
            s.add_argument("--out", default=None, help="output directory (default demo_out)")
            s.add_argument("--quick", action="store_true", help="the under-2-minute variant")
        if name == "report":
            s.add_argument("--out", default=None, help="the Markdown file to write")
            s.add_argument("inputs", nargs="*", help="workdirs of finished stages")
    sub.add_parser("configs", help="list the configs shipped with the package")
    from synthaug.pipeline.plan import add_plan_parser

    add_plan_parser(sub)
    imp = sub.add_parser(
        "import-weights",
        help="convert pretrained ADM / DeepFloyd IF weights into a synthaug checkpoint",
    )
    imp.add_argument("--from", dest="source", required=True, help="adm or deepfloyd-if")
    imp.add_argument("src", help="weights file (.pt, .bin, .safetensors) or diffusers directory")
    imp.add_argument("--out", required=True, help="output directory (checkpoints/, model.json)")
    imp.add_argument("--preset", default=None, help="diffusion-core preset of the weights")
    return p


def _run(argv: Sequence[str]) -> int:
    rest, overrides = split_config_args(argv)
    args = _build_parser().parse_args(rest)
    if args.command is None:
        _build_parser().print_help()
        return EXIT_BAD_INPUT
    from synthaug.pipeline import config as config_lib

    if args.command == "configs":
        print("\n".join(config_lib.list_configs()))
        return 0
    if args.command == "plan":
        from synthaug.pipeline.plan import run_plan

        return run_plan(args, overrides)
    if args.command == "import-weights":
        from synthaug.pipeline.pretrained import import_weights

        info = import_weights(args.source, args.src, args.out, preset=args.preset)
        print(f"wrote {args.out}: {info['preset']}, {info['num_params']} parameters")
        return 0
    stage = args.command
    spec = args.config
    if stage == "demo":
        spec = spec or ("demo/default:quick" if args.quick else "demo/default")
        if args.out is not None:
            overrides = [f"out={args.out}", *overrides]
    if stage == "report":
        if args.inputs:
            overrides = [f"inputs={','.join(args.inputs)}", *overrides]
        if args.out is not None:
            overrides = [f"out={args.out}", *overrides]
    cfg = config_lib.load_config(spec, stage, overrides)

    from synthaug.pipeline import stages

    stages.run_stage(stage, cfg)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synthaug`` console script; returns the exit code."""
    from synthaug.tpu_launch import exit_code

    # In a multi-process run a failed process leaves at once (tpu_launch.exit_code).
    return exit_code(_main(argv))


def _main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return _run(argv)
    except (PipelineError, ValueError, KeyError, FileNotFoundError) as e:
        if os.environ.get("SYNTHAUG_TRACEBACK"):
            raise
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        msg = " ".join(msg.split())  # one line
        print(f"synthaug: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("synthaug: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
