"""``anomalib-folder``: the command's parser and its edge (the only place an exit status is decided)."""

from anomalib_folder_ext.cli.command import build_parser, main

__all__ = ["build_parser", "main"]
