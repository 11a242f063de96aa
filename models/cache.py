"""A small content-addressed disk cache for model outputs (numpy arrays).

Keys are hex digests of (namespace, model id, settings, content); values are ``.npy`` (one array) or
``.npz`` (several arrays) files written atomically (temp file + ``os.replace``), so a crashed writer
never leaves a half-written entry and several processes can share one folder. Callers cache one
entry per batch (resumable: a rerun skips the finished batches) and one entry for the whole result
(a second run reads a single file).

The default folder is ``$FRUGAL_CACHE_DIR`` or ``~/.cache/frugal``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ArrayCache",
    "default_cache_dir",
    "hash_texts",
    "text_digest",
    "make_key",
]


def default_cache_dir() -> Path:
    """``$FRUGAL_CACHE_DIR`` when set, else ``~/.cache/frugal``."""
    env = os.environ.get("FRUGAL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "frugal"


def text_digest(text: str) -> bytes:
    """16-byte BLAKE2b digest of one text (UTF-8, surrogates escaped)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def hash_texts(texts: Iterable[str | None]) -> str:
    """One hex digest for an ordered sequence of texts (order and boundaries matter)."""
    h = hashlib.blake2b(digest_size=20)
    for t in texts:
        h.update(b"\x00" if t is None else b"\x01" + text_digest(t))
    return h.hexdigest()


def make_key(*parts: object) -> str:
    """A hex key from any printable parts (model id, settings, content digests)."""
    h = hashlib.blake2b(digest_size=20)
    for p in parts:
        h.update(repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()


class ArrayCache:
    """Arrays under ``root/namespace/ab/abcdef....npy|npz``; ``enabled=False`` stores nothing."""

    def __init__(self, root: Path | str | None, namespace: str, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.root = Path(root) if root is not None else default_cache_dir()
        self.dir = self.root / namespace

    def _path(self, key: str, suffix: str) -> Path:
        return self.dir / key[:2] / f"{key}{suffix}"

    # one array -----------------------------------------------------------------------------
    def get(self, key: str) -> np.ndarray | None:
        """The stored array, or None when absent (or unreadable: treated as a miss)."""
        if not self.enabled:
            return None
        path = self._path(key, ".npy")
        try:
            return np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        if not self.enabled:
            return
        self._atomic_write(self._path(key, ".npy"), lambda f: np.save(f, np.asarray(array)))

    # several arrays ------------------------------------------------------------------------
    def get_many(self, key: str, names: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The stored arrays by name, or None when absent or missing one of ``names``."""
        if not self.enabled:
            return None
        path = self._path(key, ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                if not all(n in z.files for n in names):
                    return None
                return {n: z[n] for n in names}
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None

    def put_many(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        self._atomic_write(self._path(key, ".npz"), lambda f: np.savez(f, **arrays))

    def __contains__(self, key: str) -> bool:
        return self.enabled and (
            self._path(key, ".npy").exists() or self._path(key, ".npz").exists()
        )

    def _atomic_write(self, path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
