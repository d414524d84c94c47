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


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 256x248, got {text!r}") from None
    return width, height


def _cmd_data_audit(args: argparse.Namespace) -> int:
    import json

    from octattn.data.audit import audit_dataset, format_report
    from octattn.io import atomic_write_text

    report = audit_dataset(args.directory)
    print(format_report(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=1))
        print(f"JSON written to {args.json}")
    return 1 if report.leakage else 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from octattn.data.synth import write_phantom_tree

    counts = {"train": args.per_class, "val": args.val_per_class, "test": args.test_per_class}
    written = write_phantom_tree(
        args.out, {k: v for k, v in counts.items() if v > 0}, args.seed, args.size, args.overwrite
    )
    print(f"wrote {sum(written.values())} phantoms to {args.out} ({', '.join(f'{k} {v}' for k, v in written.items())})")
    print(f"lesion masks: {args.out}/masks/SPLIT/CLASS/")
    return 0


def _cmd_data_cache(args: argparse.Namespace) -> int:
    from octattn.data.cache import build_cache
    from octattn.data.layout import available_splits, load_samples

    splits = args.split or available_splits(args.directory)
    samples = [s for split in splits for s in load_samples(args.directory, split)]
    report = build_cache(samples, args.out, args.size, skip_bad=args.skip_bad)
    print(f"cached {len(samples) - len(report)} images at {args.size}x{args.size} in {args.out}")
    for item in report.skipped:
        print(f"skipped {item['path']}: {item['reason']}")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from octattn.data.audit import audit_dataset, format_report
    from octattn.data.download import SOURCES, download_dataset

    source = SOURCES[args.name] if args.url is None else replace(SOURCES[args.name], url=args.url)
    root, digest = download_dataset(source, args.out, args.sha256)
    print(f"data set ready at {root} (archive SHA-256 {digest})")
    report = audit_dataset(root)
    print(format_report(report))
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="audit, synthesise, cache or download data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    audit = data_sub.add_parser("audit", help="summarise a data set and look for leakage between splits")
    audit.add_argument("directory", help="an OCT2017-style folder (SPLIT/CLASS/images)")
    audit.add_argument("--json", metavar="OUT", help="also write the findings as JSON")
    audit.set_defaults(handler=_cmd_data_audit)

    synth = data_sub.add_parser("synth", help="write synthetic OCT phantoms with lesion masks")
    synth.add_argument("out", help="output folder (an OCT2017-style tree)")
    synth.add_argument("--per-class", type=int, default=100, help="training images per class (default 100)")
    synth.add_argument("--val-per-class", type=int, default=0, help="validation images per class (default 0)")
    synth.add_argument("--test-per-class", type=int, default=25, help="test images per class (default 25)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=_parse_size, default=(256, 248), help="WIDTHxHEIGHT (default 256x248)")
    synth.add_argument("--overwrite", action="store_true", help="replace phantoms already in OUT")
    synth.set_defaults(handler=_cmd_data_synth)

    cache = data_sub.add_parser("cache", help="decode and resize once into a memory-mapped uint8 store")
    cache.add_argument("directory", help="an OCT2017-style folder or a CSV manifest")
    cache.add_argument("out", help="cache folder to create")
    cache.add_argument("--size", type=int, default=299, help="side in pixels (default 299)")
    cache.add_argument("--split", action="append", help="split(s) to cache (default: all present)")
    cache.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    cache.set_defaults(handler=_cmd_data_cache)

    download = data_sub.add_parser("download", help="download, verify, unpack and audit a public data set")
    download.add_argument("name", choices=["kermany"], help="kermany: OCT2017 (Mendeley rscbjbr9sj)")
    download.add_argument("out", help="folder for the archive and the unpacked data")
    download.add_argument("--sha256", help="expected SHA-256 of the archive")
    download.add_argument("--url", help="another address for the same archive (a mirror)")
    download.set_defaults(handler=_cmd_data_download)


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

    _add_data_commands(sub)
    return parser


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
