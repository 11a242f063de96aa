"""A small content-addressed disk cache for model outputs (numpy arrays).

Keys are hex digests of (namespace, model id, settings, content); values are ``.npy`` (one array) or
``.npz`` (several arrays) files written atomically (temp file + ``os.replace``), so a crashed writer
never leaves a half-written entry and several processes can share one folder. Callers cache one
entry per batch (resumable: a rerun skips the finished batches) and one entry for the whole result
(a second run reads a single file).

The default folder is ``$FRUGAL_CACHE_DIR`` or ``~/.cache/frugal``. Instead of a folder, a cache
can live in a :class:`CacheStore` — any object storage that several hosts share (the web app passes
one over its artifact storage); entries are then written whole (a temporary file, then one upload).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ArrayCache",
    "CacheStore",
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


@runtime_checkable
class CacheStore(Protocol):
    """Files by relative name (``namespace/ab/key.npy``) in storage that is not a local folder."""

    def open(self, name: str) -> IO[bytes]:
        """The file for reading; raises ``FileNotFoundError`` when there is none."""
        ...

    def save(self, name: str, fileobj: IO[bytes]) -> None:
        """Store the whole file under ``name`` (a reader never sees part of it)."""
        ...

    def exists(self, name: str) -> bool: ...


# Entries written to a CacheStore are staged in memory up to this size, then on disk.
_SPOOL_BYTES = 64 * 1024 * 1024


class ArrayCache:
    """Arrays under ``root/namespace/ab/abcdef....npy|npz``; ``enabled=False`` stores nothing.

    ``root``: a folder (``None``: :func:`default_cache_dir`), or a :class:`CacheStore`.
    """

    def __init__(
        self, root: Path | str | CacheStore | None, namespace: str, *, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.namespace = namespace
        self.store: CacheStore | None = root if isinstance(root, CacheStore) else None
        if self.store is None:
            self.root = Path(root) if root is not None else default_cache_dir()
            self.dir = self.root / namespace

    def _name(self, key: str, suffix: str) -> str:
        return f"{self.namespace}/{key[:2]}/{key}{suffix}"

    def _path(self, key: str, suffix: str) -> Path:
        return self.dir / key[:2] / f"{key}{suffix}"

    def _open(self, key: str, suffix: str):
        """The entry's file for ``np.load`` (a path, or the store's bytes in memory)."""
        if self.store is None:
            return self._path(key, suffix)
        with self.store.open(self._name(key, suffix)) as f:
            return io.BytesIO(f.read())

    # one array -----------------------------------------------------------------------------
    def get(self, key: str) -> np.ndarray | None:
        """The stored array, or None when absent (or unreadable: treated as a miss)."""
        if not self.enabled:
            return None
        try:
            return np.load(self._open(key, ".npy"), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        if not self.enabled:
            return
        self._write(key, ".npy", lambda f: np.save(f, np.asarray(array)))

    # several arrays ------------------------------------------------------------------------
    def get_many(
        self, key: str, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray] | None:
        """The stored arrays by name (all of them when ``names`` is None), or None when absent or
        missing one of ``names``."""
        if not self.enabled:
            return None
        try:
            with np.load(self._open(key, ".npz"), allow_pickle=False) as z:
                names = z.files if names is None else names
                if not all(n in z.files for n in names):
                    return None
                return {n: z[n] for n in names}
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None

    def put_many(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        self._write(key, ".npz", lambda f: np.savez(f, **arrays))

    def __contains__(self, key: str) -> bool:
        if not self.enabled:
            return False
        if self.store is not None:
            return any(self.store.exists(self._name(key, s)) for s in (".npy", ".npz"))
        return self._path(key, ".npy").exists() or self._path(key, ".npz").exists()

    def _write(self, key: str, suffix: str, write) -> None:
        if self.store is None:
            self._atomic_write(self._path(key, suffix), write)
            return
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as f:
            write(f)
            f.seek(0)
            self.store.save(self._name(key, suffix), f)

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
