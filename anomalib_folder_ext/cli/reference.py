"""The docs' option tables, made from the code: ``anomalib-folder``'s parser and the writer's options.

Each table sits in the docs between ``<!-- generated: NAME -->`` and ``<!-- /generated: NAME -->``;
a test fails when one differs from what the code says. To rewrite them after changing an option::

    python -m anomalib_folder_ext.cli.reference --write docs/CONFIGURATION.md
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from anomalib_folder_ext.options import OUTPUT_DIR_DOC, option_defaults, option_docs, watch_defaults, watch_docs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _yaml_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def writer_table() -> str:
    """Every writer option (``init_args`` of ``AnomalyMapWriter``): key, default, what it does."""
    defaults = option_defaults()
    rows = [f"| `output_dir` | null | {_cell(OUTPUT_DIR_DOC)} |"]
    rows += [f"| `{name}` | {_yaml_value(defaults[name])} | {_cell(doc)} |" for name, doc in option_docs().items()]
    return "\n".join(["| key | default | |", "| --- | --- | --- |", *rows])


def watch_table() -> str:
    """Every watch option (``init_args`` of ``WatchedFolderDataModule``, beside the folder datamodule's)."""
    defaults = watch_defaults()
    rows = [f"| `{name}` | {_yaml_value(defaults[name])} | {_cell(doc)} |" for name, doc in watch_docs().items()]
    return "\n".join(["| key | default | |", "| --- | --- | --- |", *rows])


def _flag(action: argparse.Action) -> str:
    names = " / ".join(action.option_strings)
    if action.choices:
        return f"{names} {'|'.join(action.choices)}"
    if isinstance(action.metavar, tuple):
        return f"{names} {' '.join(action.metavar)}"
    if action.metavar:
        return f"{names} {action.metavar}"
    return names


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001 - argparse names its actions' kinds only so
        return "off"
    if action.default is None or action.default == argparse.SUPPRESS:
        return ""
    if isinstance(action.default, list):
        return " ".join(str(value) for value in action.default)
    return str(action.default)


def flag_table(command: str = "predict") -> str:
    """Every flag of ``anomalib-folder COMMAND``: the flag, its help, its default."""
    from anomalib_folder_ext.cli.parser import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))  # noqa: SLF001
    rows = [f"| `{_cell(_flag(action))}` | {_cell(action.help or '')} | {_cell(_default(action))} |"
            for action in commands.choices[command]._actions  # noqa: SLF001
            if action.option_strings and not isinstance(action, argparse._HelpAction)]  # noqa: SLF001
    return "\n".join(["| flag | meaning | default |", "| --- | --- | --- |", *rows])


TABLES: dict[str, Callable[[], str]] = {"flags": flag_table, "writer-options": writer_table,
                                        "calibrate-flags": lambda: flag_table("calibrate"),
                                        "watch-flags": lambda: flag_table("watch"), "watch-options": watch_table}
_BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(\n<!-- /generated: \2 -->)", re.S)


def generated_blocks(text: str) -> dict[str, str]:
    """The tables a document holds, by name."""
    return {match.group(2): match.group(3) for match in _BLOCK.finditer(text)}


def refreshed(text: str) -> str:
    """``text`` with every generated table made again from the code."""
    return _BLOCK.sub(lambda match: f"{match.group(1)}{TABLES[match.group(2)]()}{match.group(4)}", text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anomalib_folder_ext.cli.reference", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite the tables (default: say which differ)")
    options = parser.parse_args(argv)
    stale = []
    for path in options.files:
        text = path.read_text()
        made = refreshed(text)
        if made != text:
            stale.append(path)
            if options.write:
                path.write_text(made)
    for path in stale:
        print(f"{path}: {'tables rewritten' if options.write else 'a table differs from the code'}")
    return 1 if stale and not options.write else 0


if __name__ == "__main__":
    sys.exit(main())
