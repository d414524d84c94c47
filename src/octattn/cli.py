"""The ``octattn`` command: sub-commands that parse their arguments and call the library.

No logic lives here beyond argument parsing and printing; a user's mistake (an
:class:`~octattn.errors.OctattnError`) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from octattn.errors import OctattnError

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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands register themselves here)."""
    from octattn import __version__

    parser = argparse.ArgumentParser(
        prog="octattn", description="Retinal OCT classification with Inception-v4 and residual attention."
    )
    parser.add_argument("--version", action="version", version=f"octattn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list the models with their parameter counts and FLOPs")
    models.add_argument("--size", type=int, default=299, help="input size in pixels (default 299)")
    models.add_argument("--in-chans", type=int, default=1, choices=(1, 3), help="input channels (default 1)")
    models.set_defaults(handler=_cmd_models)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``octattn`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except OctattnError as exc:
        print(f"octattn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("octattn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
