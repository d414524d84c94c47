"""The generated pages of the docs site: every command (from ``octattn``'s argparse parser) and
every training config key (from the config's own fields), plus the tables of measured numbers
(``benchmarks.docs_tables``). ``make docs`` runs this before building; ``--check`` lists what is
stale and exits 1 (the test suite runs the same check, so the reference cannot drift)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from benchmarks import docs_tables  # noqa: E402

from octattn.cli import build_parser  # noqa: E402
from octattn.cli_config import value_text  # noqa: E402
from octattn.training.config import describe, load_config  # noqa: E402

REFERENCE = REPO / "docs" / "reference"
GENERATED = "<!-- generated from the code by docs/generate.py: edit the code, then run it -->\n"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
        meaning = (action.help or "").replace("|", "\\|")
        if action.choices and not isinstance(action.choices, dict):
            meaning += f" (one of: {', '.join(str(c) for c in action.choices)})"
        shown = action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
        if shown and action.nargs != 0 and "default" not in meaning:
            meaning += f" (default: `{action.default}`)"
        rows.append(f"| {name} | {meaning.strip()} |")
    return rows


def _command_sections(parser: argparse.ArgumentParser, path: str, help_text: str, level: int) -> list[str]:
    usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
    lines = [f"{'#' * level} `{path}`", "", help_text or (parser.description or ""), "", f"```\n{usage}\n```", ""]
    subs = _subcommands(parser)
    rows = _option_rows(parser)
    if rows:
        lines += ["| argument | meaning |", "| --- | --- |", *rows, ""]
    helps = _helps(parser)
    for name, child in subs.items():
        lines += _command_sections(child, f"{path} {name}", helps.get(name, ""), min(level + 1, 4))
    return lines


def commands_page() -> str:
    """Every ``octattn`` command with its usage and arguments, from the parser itself."""
    parser = build_parser()
    lines = [
        GENERATED,
        "# Commands",
        "",
        "Every command and option of `octattn`, generated from its argument parser. "
        "`octattn COMMAND --help` prints the same. A user's mistake is one line on stderr and exit code 2.",
        "",
    ]
    lines += _option_rows_section(parser)
    helps = _helps(parser)
    for name, child in _subcommands(parser).items():
        lines += _command_sections(child, f"octattn {name}", helps.get(name, ""), 2)
    return "\n".join(lines).rstrip() + "\n"


def _option_rows_section(parser: argparse.ArgumentParser) -> list[str]:
    return ["Options of `octattn` itself:", "", "| argument | meaning |", "| --- | --- |", *_option_rows(parser), ""]


def config_page() -> str:
    """Every training key with its default and help, from the config's own fields."""
    rows = [
        f"| `{r['key']}` | `{value_text(r['default'])}` | {r['help'].replace('|', chr(92) + '|')} |"
        for r in describe(load_config(None))
    ]
    return (
        "\n".join(
            [
                GENERATED,
                "# Configuration keys",
                "",
                "Every key of a training config (YAML, or `key=value` on the command line), generated from "
                "the config's own fields. `octattn config show [--config FILE] [key=value ...]` prints the same "
                "with the values a config resolves to; an unknown key is refused with the closest names.",
                "",
                "| key | default | meaning |",
                "| --- | --- | --- |",
                *rows,
            ]
        )
        + "\n"
    )


PAGES = {"commands.md": commands_page, "config.md": config_page}


def stale() -> list[str]:
    """Generated pages and tables that differ from what the code and results produce."""
    found = [
        f"docs/reference/{name}"
        for name, make in PAGES.items()
        if not (REFERENCE / name).exists() or (REFERENCE / name).read_text() != make()
    ]
    return found + docs_tables.stale()


def main() -> int:
    """Write the generated pages and tables (or with ``--check``, list the stale ones)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list stale pages and exit 1; write nothing")
    args = parser.parse_args()
    if args.check:
        found = stale()
        for name in found:
            print(f"{name} is stale: run python docs/generate.py")
        return 1 if found else 0
    REFERENCE.mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        (REFERENCE / name).write_text(make())
    sys.argv = [sys.argv[0]]
    return docs_tables.main()


if __name__ == "__main__":
    sys.exit(main())
