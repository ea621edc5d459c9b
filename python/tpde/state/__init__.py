"""A training state as the store sees it: a JSON skeleton (tree.py) plus named arrays
(arrays.py: how each maps back to the user's object; torch_adapter.py: torch tensors)."""
