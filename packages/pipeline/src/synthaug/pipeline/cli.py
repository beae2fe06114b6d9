"""The ``synthaug`` command line: one subcommand per stage, plus the demo.

    synthaug finetune         --config paper/base64_finetune [--config.train.num_steps=1000]
    synthaug sample           --config paper/sample_final --config.out_dir=/data/synthetic
    synthaug train-classifier --config paper/resnet50:mixed
    synthaug evaluate         --config paper/evaluate:val256
    synthaug fid-stats        --config paper/fid_stats:val256 --config.out=val256.npz
    synthaug select-checkpoint --config paper/select_checkpoint:base64
    synthaug report           --config.inputs=run1,run2 --config.out=report.md
    synthaug demo             --out demo_out [--quick]
    synthaug configs          # list the configs shipped with the package
    synthaug plan             --config paper/base64_finetune   # per-device memory
    synthaug import-weights   --from adm|deepfloyd-if SRC --out DIR [--preset NAME]
    synthaug STAGE --help     # the override syntax and every key of the stage's config

Configs (the syntax of ml_collections.config_flags):
  --config path/to/file.py[:variant]   a config file; get_config(variant) builds the config
  --config paper/resnet50:mixed        a config shipped under synthaug/pipeline/configs/
  --config.a.b=VALUE                   override one key (also: --config.a.b VALUE)
  --config.flag                        a bool key alone is set true
A value is parsed as the type the key has: strings verbatim, bools from true/false/1/0,
numbers and tuples as Python literals (a tuple also as a comma-separated list: a,b,c).
An unknown key is an error. A run directory belongs to one run: a config that differs
from the one that made it is refused unless --config.overwrite=true.

Bad input (an unknown config key, a missing checkpoint or data directory, an unknown class
name, an output path that cannot be written) is reported in one line on stderr with exit
code 2, before any output is written. Set SYNTHAUG_TRACEBACK=1 to see the traceback instead.
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
    "select-checkpoint": "rank the kept checkpoints of a finetune workdir by FID on N samples",
}

_OVERRIDE_HELP = """\
overrides (the syntax of ml_collections.config_flags):
  --config path/to/file.py[:variant]  or a shipped config name (synthaug configs)
  --config.KEY=VALUE                  override one key, e.g. --config.{example}
  --config.KEY VALUE                  the same; the value may not start with --
  --config.FLAG                       a bool key alone is set true
  values parse as the key's type: strings verbatim, bools true/false/1/0, numbers and
  tuples as Python literals (tuples also as a,b,c); an unknown key is an error
"""

_EXAMPLE = {
    "finetune": "train.num_steps=1000",
    "sample": "base.guidance=1.25",
    "train-classifier": "recipe.epochs=10",
    "evaluate": "num_samples=10000",
    "report": "title=Runs",
    "demo": "sample.per_class=10",
    "fid-stats": "num_images=1000",
    "select-checkpoint": "select.num_samples=1000",
}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage over several lines; keep one.
        raise ConfigError(f"{self.prog}: {message}")


def split_config_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``--config.key=value`` / ``--config.key value`` overrides from other args.

    ``--config.key`` followed by another option (``--...``) or nothing is kept bare
    (``"key"``): a bool key is then set true, any other key is an error naming it. A value
    never starts with ``--``, so one override cannot swallow the next.

    Returns:
      (the remaining arguments, the overrides as ``key=value`` or bare ``key`` strings).
    """
    rest: list[str] = []
    overrides: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a.startswith("--config."):
            body = a[len("--config.") :]
            if not body or body.startswith("="):
                raise ConfigError(f"bad override {a!r}; expected --config.KEY=VALUE")
            if "=" not in body and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                body = f"{body}={argv[i + 1]}"
                i += 1
            overrides.append(body)
        else:
            rest.append(a)
        i += 1
    return rest, overrides


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = _OneLineParser(
        prog="synthaug",
        description=__doc__.split("\n\n", 1)[1].split("\n\nBad input")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", parser_class=_OneLineParser)
    subs = {}
    for name, help_ in _STAGE_HELP.items():
        s = subs[name] = sub.add_parser(
            name,
            help=help_,
            description=help_,
            add_help=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=_OVERRIDE_HELP.format(example=_EXAMPLE[name]),
        )
        s.add_argument("-h", "--help", action="store_true", help="show this help and the keys")
        s.add_argument("--config", default=None, help="path.py[:variant] or a config name")
        if name == "demo":
            s.add_argument("--out", default=None, help="output directory (default demo_out)")
            s.add_argument(
                "--quick",
                action="store_true",
                help="the quick variant (of --config, default demo/default)",
            )
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
    return p, subs


def _demo_spec(spec: str | None, quick: bool) -> str:
    """``--config`` of the demo with ``--quick``: the config's ``quick`` variant."""
    spec = spec or "demo/default"
    if not quick:
        return spec
    name, _, variant = spec.partition(":")
    if variant and variant != "quick":
        raise ConfigError(
            f"--quick asks for the 'quick' variant, but --config {spec!r} names variant "
            f"{variant!r}; drop one of them"
        )
    return f"{name}:quick"


def _print_help(parser: argparse.ArgumentParser, stage: str, spec, overrides) -> None:
    from synthaug.pipeline import config as config_lib

    parser.print_help()
    cfg = config_lib.load_config(spec, stage, overrides)
    where = spec or "the stage's defaults"
    print(f"\nkeys of {where} (--config.KEY=VALUE):")
    for key, value in config_lib.flatten(cfg).items():
        print(f"  {key} = {value!r}")


def _run(argv: Sequence[str]) -> int:
    rest, overrides = split_config_args(argv)
    parser, subs = _build_parser()
    args = parser.parse_args(rest)
    if args.command is None:
        parser.print_help()
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
        spec = _demo_spec(spec, args.quick)
        if args.out is not None:
            overrides = [f"out={args.out}", *overrides]
    if stage == "report":
        if args.inputs:
            overrides = [f"inputs={','.join(args.inputs)}", *overrides]
        if args.out is not None:
            overrides = [f"out={args.out}", *overrides]
    if args.help:
        _print_help(subs[stage], stage, spec, overrides)
        return 0
    cfg = config_lib.load_config(spec, stage, overrides)

    from synthaug.pipeline import stages

    stages.run_stage(stage, cfg)
    return 0


def _one_line(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, OSError) and e.filename is not None and not isinstance(e, PipelineError):
        # e.g. "cannot write 'out/metrics.json': [Errno 20] Not a directory"
        target = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        msg = f"cannot use {str(target)!r}: {e.strerror or e}"
    else:
        msg = str(e)
    return " ".join(msg.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synthaug`` console script; returns the exit code."""
    from synthaug.tpu_launch import exit_code

    # In a multi-process run a failed process leaves at once (tpu_launch.exit_code).
    return exit_code(_main(argv))


def _main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The stages use tf.data and tf.io, never tf.keras. `import tensorflow` imports Keras 3
    # eagerly (4-6 s of CPU at every process start) unless TF_USE_LEGACY_KERAS is set; with
    # it set and tf_keras not installed, TensorFlow skips that import.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        return _run(argv)
    # FloatingPointError: training diverged (NonFiniteLossError of diffusion-core and
    # classifiers), a consequence of the config's values such as the learning rate.
    except (PipelineError, ValueError, KeyError, OSError, FloatingPointError) as e:
        if os.environ.get("SYNTHAUG_TRACEBACK"):
            raise
        print(f"synthaug: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("synthaug: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
