"""``octattn data``: audit, synthesise, learn a phantom style, cache or download data sets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from octattn.errors import DataError

if TYPE_CHECKING:
    from octattn.data.phantom_style import PhantomStyle


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


def _phantom_style(choice: str | None) -> PhantomStyle | None:
    """``--style``: none, ``realistic`` (the shipped OCT2017 style) or a style JSON file."""
    from octattn.data.phantom_style import PhantomStyle, default_style

    if choice is None:
        return None
    return default_style() if choice == "realistic" else PhantomStyle.load(choice)


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from octattn.data.synth import write_phantom_tree

    counts = {"train": args.per_class, "val": args.val_per_class, "test": args.test_per_class}
    written = write_phantom_tree(
        args.out,
        {k: v for k, v in counts.items() if v > 0},
        args.seed,
        args.size,
        args.overwrite,
        args.difficulty,
        _phantom_style(args.style),
    )
    print(f"wrote {sum(written.values())} phantoms to {args.out} ({', '.join(f'{k} {v}' for k, v in written.items())})")
    print(f"lesion masks: {args.out}/masks/SPLIT/CLASS/")
    return 0


def _cmd_data_style(args: argparse.Namespace) -> int:
    from octattn.data.layout import IMAGE_SUFFIXES
    from octattn.data.phantom_style import learn_style

    root = Path(args.directory)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise DataError(f"{out}: already exists (pass --overwrite to replace it)")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    style = learn_style(paths, args.source or f"{len(paths)} scans of {root.name}")
    style.save(out)
    print(
        f"learnt a phantom style from {style.scans} scans: retina top {style.retina_top[0]:.2f}-"
        f"{style.retina_top[1]:.2f} of the height, thickness {style.retina_thickness[0]:.2f}-"
        f"{style.retina_thickness[1]:.2f}, speckle contrast {style.speckle_contrast:.2f}, noise floor "
        f"{style.noise_floor:.0f}, wedges in {100 * style.wedge_rate:.0f}%; written to {out}"
    )
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


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``octattn data`` and its sub-commands."""
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
    synth.add_argument(
        "--difficulty",
        choices=("standard", "hard"),
        default="standard",
        help="lesion size and contrast: standard, or hard (smaller, fainter lesions)",
    )
    synth.add_argument(
        "--style",
        metavar="STYLE",
        help="render like real scans: 'realistic' (learnt from real OCT2017 scans) or a JSON file "
        "from 'octattn data style'",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace phantoms already in OUT")
    synth.set_defaults(handler=_cmd_data_synth)

    style = data_sub.add_parser("style", help="learn what real scans look like, for realistic phantoms")
    style.add_argument("directory", help="a folder of real scans (searched recursively)")
    style.add_argument("--out", required=True, help="the style JSON to write")
    style.add_argument("--source", help="a description of the scans kept in the file (default: count and folder name)")
    style.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    style.set_defaults(handler=_cmd_data_style)

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
