"""Generic job tasks (see workers/base.py)."""
