"""The options are documented once: the docs' tables, the flags' help and the writer's signature agree with the code."""

from __future__ import annotations

import inspect

import pytest

from anomalib_folder_ext.cli import reference
from anomalib_folder_ext.options import WriterOptions, option_defaults, option_docs

from conftest import DOCS, REPO



def test_every_table_is_in_the_docs_once():
    found = [name for path in DOCS for name in reference.generated_blocks(path.read_text())]
    assert sorted(found) == sorted(reference.TABLES)


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_the_docs_tables_say_what_the_code_does(path):
    text = path.read_text()
    for name, table in reference.generated_blocks(text).items():
        assert table == reference.TABLES[name](), (
            f"{path.name}: the {name} table differs from the code; "
            f"run: python -m anomalib_folder_ext.cli.reference --write {path.relative_to(REPO)}")


def test_a_changed_flag_is_noticed():
    text = next(path.read_text() for path in DOCS if "generated: flags" in path.read_text())
    changed = text.replace("| `--batch_size` | images per forward pass | 8 |", "| `--batch_size` | images per forward pass | 16 |")
    assert changed != text
    assert reference.refreshed(changed) == text  # rewriting puts the code's default back


def test_the_flag_table_lists_every_flag_of_the_parser():
    from anomalib_folder_ext.cli.parser import build_parser

    predict = build_parser()._subparsers._group_actions[0].choices["predict"]
    flags = {flag for action in predict._actions for flag in action.option_strings} - {"-h", "--help"}
    table = reference.flag_table()
    assert all(f"`{flag}" in table or f"/ {flag}" in table for flag in flags)
    assert "--normalization per_image\\|model\\|fixed" in table  # choices from the options' enums


def test_the_writer_takes_every_option_with_its_default():
    from anomalib_folder_ext.callbacks.writer import AnomalyMapWriter

    parameters = inspect.signature(AnomalyMapWriter).parameters
    # and output_dir, which saved configs name: the datamodule owns the output dir, the writer only checks it
    assert {name: parameter.default for name, parameter in parameters.items()} == {"output_dir": None, **option_defaults()}
    for name, doc in option_docs().items():  # anomalib predict --help shows these (jsonargparse reads the docstring)
        assert f"{name}: {doc}" in AnomalyMapWriter.__doc__
    assert "output_dir: Must be null or the datamodule's output_dir" in AnomalyMapWriter.__doc__


def test_every_option_has_a_doc():
    assert all(len(doc) > 20 for doc in option_docs().values())
    assert WriterOptions().write_workers >= 1


def test_the_writers_choices_are_the_options_enums():
    from typing import get_args, get_type_hints

    from anomalib_folder_ext.callbacks.writer import AnomalyMapWriter
    from anomalib_folder_ext.options import (
        MapSize,
        Normalization,
        OverlayFormat,
        choices,
    )

    hints = get_type_hints(AnomalyMapWriter.__init__)
    for name, kind in (("normalization", Normalization), ("map_size", MapSize), ("overlay_format", OverlayFormat)):
        assert list(get_args(hints[name])) == choices(kind)
