"""Command-line tools: `tpde-pack` (main.py, with checkpoint_files.py) and `tpde-demo`
(demo.py)."""

from .main import main, parse_slice, tensor_group

__all__ = ["main", "parse_slice", "tensor_group"]
