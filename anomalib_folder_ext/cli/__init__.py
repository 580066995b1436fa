"""``anomalib-folder``: the command's parser and its edge (the only place an exit status is decided)."""

from anomalib_folder_ext.cli.command import main
from anomalib_folder_ext.cli.parser import build_parser

__all__ = ["build_parser", "main"]
