"""Data: the synthetic thin-structure datasets (``make-dataset``) and reading/writing image files."""
