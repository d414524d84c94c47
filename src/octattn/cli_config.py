"""``octattn config show``: every training key with its value, default and help."""

from __future__ import annotations

import argparse
from typing import Any


def value_text(value: Any) -> str:
    """A value as YAML writes it inline (`null`, `true`, `[DME, DRUSEN]`)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _cmd_config_show(args: argparse.Namespace) -> int:
    from octattn.training.config import describe, load_config

    rows = describe(load_config(args.config, args.overrides))
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        value, default = value_text(r["value"]), value_text(r["default"])
        marker = "" if r["value"] == r["default"] else f"  (default {default})"
        print(f"{r['key']:<{width}}  {value}{marker}")
        print(f"{'':<{width}}  {r['help']}")
    return 0


def add_config_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``octattn config show``."""
    config = sub.add_parser("config", help="show the training configuration keys")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="CONFIG_COMMAND")
    show = config_sub.add_parser(
        "show",
        help="print every key with its value, default and one line of help",
        description="Print every training key: its value (from --config and key=value), its default and its help.",
    )
    show.add_argument("--config", help="a YAML experiment config (default: the built-in recipe)")
    show.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, as for train")
    show.set_defaults(handler=_cmd_config_show)
