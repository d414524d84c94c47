"""The ``octattn`` command: sub-commands that parse their arguments and call the library.

No logic lives here beyond argument parsing and printing; a user's mistake (an
:class:`~octattn.errors.OctattnError`) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from octattn.cli_config import add_config_commands
from octattn.cli_data import add_data_commands
from octattn.cli_inference import add_inference_commands, add_precision
from octattn.errors import OctattnError
from octattn.precision import EVALUATION_PRECISION
from octattn.progress import set_quiet

Handler = Callable[[argparse.Namespace], int]


def _cmd_models(args: argparse.Namespace) -> int:
    from octattn.models import MODEL_NAMES, create_model
    from octattn.models.summary import measure_cost

    size = (args.size, args.size)
    costs = [
        measure_cost(name, create_model(name, in_chans=args.in_chans), size, args.in_chans) for name in MODEL_NAMES
    ]
    plain = next(c for c in costs if c.name == "inception_v4")
    print(f"Models at {args.size}x{args.size}, {args.in_chans} input channel(s), 4 classes:")
    print(f"{'model':<24}{'params':>12}{'GFLOPs':>10}{'GMACs':>9}{'x inception_v4 FLOPs':>22}")
    for cost in costs:
        print(
            f"{cost.name:<24}{cost.params / 1e6:>11.2f}M{cost.gflops:>10.2f}{cost.gmacs:>9.2f}"
            f"{cost.gflops / plain.gflops:>22.2f}"
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from octattn.training.config import config_for_resume, load_config
    from octattn.training.loop import train

    overrides = list(args.overrides)
    for key in ("data", "cache", "weights"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.resume:
        config = config_for_resume(args.out, args.config, overrides, force=args.force)
    else:
        config = load_config(args.config, overrides)
    train(config, args.out, resume=args.resume, overwrite=args.overwrite)
    return 0


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a model from a YAML config (torchrun-ready)",
        description="Train from a YAML experiment config; key=value pairs override its settings.",
    )
    train.add_argument("--config", help="YAML experiment config (default: the paper's recipe)")
    train.add_argument("--data", help="OCT2017-style folder or CSV manifest (overrides the config)")
    train.add_argument("--cache", help="a cache folder from `octattn data cache` (overrides the config)")
    train.add_argument("--weights", help="local ImageNet weights (.safetensors) for the backbone")
    train.add_argument("--out", default="runs/latest", help="run folder (default runs/latest)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint, with its own config.yaml"
    )
    train.add_argument(
        "--force", action="store_true", help="with --resume: accept a config that differs from the run's"
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=3")
    train.set_defaults(handler=_cmd_train)


def _class_map(text: str) -> dict[str, str]:
    from octattn.classes import parse_class_map

    try:
        return parse_class_map(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_evaluate(args: argparse.Namespace) -> int:

    from octattn.evaluation.evaluate import default_evaluation_dir, evaluate_model, format_headline, write_evaluation

    result = evaluate_model(
        args.model,
        args.data,
        args.split,
        tta=args.tta,
        batch_size=args.batch,
        skip_bad=args.skip_bad,
        precision=args.precision,
        class_map=args.class_map,
    )
    out = Path(args.out) if args.out else default_evaluation_dir(args.model)
    write_evaluation(result, out)
    print(format_headline(result.report))
    for item in result.skipped:
        print(f"skipped {item['path']}: {item['reason']}")
    print(f"predictions and metrics written to {out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from octattn.evaluation.compare import compare_models
    from octattn.run_paths import common_data

    data = common_data([args.a, args.b], args.data)
    for line in compare_models(args.a, args.b, data, args.split, args.batch, args.seed, precision=args.precision):
        print(line)
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from octattn.reproduce import PAPER_PRESETS, reproduce

    presets = args.only.split(",") if args.only else list(PAPER_PRESETS)
    reproduce(args.data, args.out, presets, args.overrides, args.weights_v4, args.weights_v3)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from octattn.reporting.report import write_report

    page = write_report(args.runs, args.out, title=args.title)
    print(f"report written to {page} (Markdown twin: {page.parent / 'report.md'})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from octattn.demo import run_demo

    run_demo(args.out, args.data, args.overrides)
    return 0


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="metrics with confidence intervals on a labelled split")
    evaluate.add_argument("model", help="a model bundle or a run folder")
    evaluate.add_argument(
        "--data", help="OCT2017-style folder or CSV manifest (default for a run folder: the data it recorded)"
    )
    evaluate.add_argument("--split", default="test", help="split to evaluate (default test)")
    evaluate.add_argument("--out", help="output folder (default RUN/evaluation)")
    evaluate.add_argument("--tta", action="store_true", help="average with the horizontally flipped scan")
    evaluate.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    evaluate.add_argument("--skip-bad", action="store_true", help="leave out unreadable images and list them")
    evaluate.add_argument(
        "--class-map",
        type=_class_map,
        metavar="DATA=MODEL,...",
        help="evaluate on a data set with other classes: e.g. NO=NORMAL,DME=DME (unmapped classes are left out)",
    )
    add_precision(evaluate, EVALUATION_PRECISION)
    evaluate.set_defaults(handler=_cmd_evaluate)

    compare = sub.add_parser("compare", help="two models on the same images: McNemar and paired intervals")
    compare.add_argument("a", help="model A (bundle or run folder)")
    compare.add_argument("b", help="model B (bundle or run folder)")
    compare.add_argument("--data", help="OCT2017-style folder or CSV manifest (default: the data the runs recorded)")
    compare.add_argument("--split", default="test")
    compare.add_argument("--batch", type=int, default=32)
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_precision(compare, EVALUATION_PRECISION)
    compare.set_defaults(handler=_cmd_compare)

    reproduce = sub.add_parser("reproduce", help="train and evaluate every experiment of the paper, then report")
    reproduce.add_argument("--data", required=True, help="the OCT2017 folder (train/ and test/)")
    reproduce.add_argument("--out", default="runs/paper", help="output folder (default runs/paper)")
    reproduce.add_argument(
        "--only", help="comma-separated presets (default: the paper's six; attention-nomask on request)"
    )
    reproduce.add_argument("--weights-v4", help="local Inception-v4 ImageNet weights (.safetensors)")
    reproduce.add_argument("--weights-v3", help="local Inception-v3 ImageNet weights (.safetensors)")
    reproduce.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every preset")
    reproduce.set_defaults(handler=_cmd_reproduce)

    report = sub.add_parser("report", help="HTML + Markdown report of one or more runs")
    report.add_argument("runs", nargs="+", help="run folders")
    report.add_argument("--out", required=True, help="output folder")
    report.add_argument("--title", default="octattn report")
    report.set_defaults(handler=_cmd_report)

    demo = sub.add_parser("demo", help="offline demo: phantoms -> train -> evaluate -> report, on the CPU")
    demo.add_argument("--out", help="output folder (default runs/demo-DATE-TIME)")
    demo.add_argument("--data", help="run the same experiment on a real OCT2017-style folder")
    demo.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    demo.set_defaults(handler=_cmd_demo)


BENCHMARKS = (
    "loader",
    "models",
    "inference",
    "memory",
    "serve_load",
    "gpu",
    "attention_study",
    "demo",
    "ood",
    "archive",
    "real_scans",
    "ensemble",
    "octdl_recipe",
    "oct2017_from_backbone",
    "phantom_zero_shot",
    "epoch",
    "validation_cadence",
    "parallel_runs",
    "thread_pairs",
    "plan_time",
    "suite",
)


def _cmd_bench(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    if not (repo / "benchmarks" / f"{args.name}.py").is_file():
        print(
            f"octattn: error: benchmarks run from a clone of the repository ({repo / 'benchmarks'} not found)",
            file=sys.stderr,
        )
        return 2
    command = [sys.executable, "-m", f"benchmarks.{args.name}", *args.options]
    return subprocess.run(command, cwd=repo, check=False).returncode


VENDOR_LOGGERS = ("eyepy",)
"""Libraries whose log lines (eyepy: "The volume contains less layers than expected...")
mean nothing to a user running a command; shown with ``--verbose``."""


def _quiet_vendor_logs(verbose: bool) -> None:
    import logging

    for name in VENDOR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands register themselves here)."""
    from octattn import __version__

    parser = argparse.ArgumentParser(
        prog="octattn", description="Retinal OCT classification with Inception-v4 and residual attention."
    )
    parser.add_argument("--version", action="version", version=f"octattn {__version__}")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (they are off anyway when not a terminal)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list the models with their parameter counts and FLOPs")
    models.add_argument("--size", type=int, default=299, help="input size in pixels (default 299)")
    models.add_argument("--in-chans", type=int, default=1, choices=(1, 3), help="input channels (default 1)")
    models.set_defaults(handler=_cmd_models)

    add_data_commands(sub)
    _add_train_command(sub)
    add_config_commands(sub)
    _add_evaluation_commands(sub)
    add_inference_commands(sub)
    bench = sub.add_parser("bench", help="run a benchmark of benchmarks/ (results in benchmarks/results/)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("options", nargs=argparse.REMAINDER, help="passed to the benchmark (e.g. --quick)")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``octattn`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_vendor_logs(getattr(args, "verbose", False))
    set_quiet(args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except OctattnError as exc:
        print(f"octattn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("octattn: interrupted", file=sys.stderr)
        return 130
    finally:
        set_quiet(False)  # --quiet is this call's, not the process's (main() is called in-process too)


if __name__ == "__main__":
    sys.exit(main())
