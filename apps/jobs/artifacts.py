"""Artifacts: files jobs produce (model weights, LM caches), kept in the ``artifacts`` storage.

Everything goes through ``django.core.files.storage.storages["artifacts"]`` — a local folder by
default, S3-compatible storage (django-storages) when several hosts must share artifacts — so a
worker on one machine can save what a web process or another worker opens on another.

The model cache (LM answers, embeddings, DORM features: arrays keyed by model and content) lives
there too, found one way, :func:`model_cache`, so a CPU worker and a GPU worker on two hosts
reuse each other's passes.
"""

import re
import uuid
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.db import transaction

from apps.jobs.models import Artifact

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def artifact_storage():
    return storages["artifacts"]


def _safe(part: str, fallback: str) -> str:
    cleaned = _UNSAFE.sub("-", part).strip(".-")[:100]
    return cleaned or fallback


def save_artifact(
    *,
    project,
    job=None,
    kind: str,
    name: str,
    fileobj_or_bytes: bytes | IO[bytes],
    metadata: dict | None = None,
) -> Artifact:
    """Store the content under ``projects/<id>/<kind>/<unique>-<name>`` and record it.

    ``fileobj_or_bytes``: bytes, or a binary file object (read in chunks, never whole into
    memory). The row is written only after the file is stored; if the row cannot be written,
    the stored file is removed again.
    """
    if not kind or not name:
        raise ValidationError("An artifact needs a kind and a name.")
    if isinstance(fileobj_or_bytes, bytes | bytearray | memoryview):
        content = ContentFile(bytes(fileobj_or_bytes))
    elif hasattr(fileobj_or_bytes, "read"):
        content = File(fileobj_or_bytes)
    else:
        raise ValidationError("Artifact content must be bytes or a binary file object.")
    storage = artifact_storage()
    path = (
        f"projects/{project.pk}/{_safe(kind, 'artifact')}/"
        f"{uuid.uuid4().hex[:12]}-{_safe(name, 'file')}"
    )
    stored = storage.save(path, content)
    try:
        with transaction.atomic():
            artifact = Artifact(
                project=project,
                job=job,
                kind=kind[:64],
                name=name[:300],
                path=stored,
                size_bytes=storage.size(stored),
                metadata=metadata or {},
            )
            artifact.full_clean(exclude=["project", "job"])
            artifact.save()
    except BaseException:
        storage.delete(stored)
        raise
    return artifact


def open_artifact(artifact: Artifact, mode: str = "rb") -> IO[bytes]:
    """The artifact's content as a binary file object (close it, or use ``with``)."""
    return artifact_storage().open(artifact.path, mode)


def delete_artifact(artifact: Artifact) -> None:
    """Remove the stored file and the row."""
    artifact_storage().delete(artifact.path)
    artifact.delete()


MODEL_CACHE_PREFIX = "model-cache"


class StorageCacheStore:
    """The model cache inside object storage: a ``models.cache.CacheStore`` over a Django storage.

    Entries are content-addressed (the same name always holds the same arrays), so a writer that
    finds the name taken keeps the stored copy, and a copy saved beside it under another name by
    a concurrent writer is removed again.
    """

    def __init__(self, storage, prefix: str = MODEL_CACHE_PREFIX) -> None:
        self.storage = storage
        self.prefix = prefix

    def _path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def open(self, name: str) -> IO[bytes]:
        return self.storage.open(self._path(name), "rb")  # FileNotFoundError when absent

    def save(self, name: str, fileobj: IO[bytes]) -> None:
        path = self._path(name)
        if self.storage.exists(path):
            return
        stored = self.storage.save(path, File(fileobj, name=path.rsplit("/", 1)[-1]))
        if stored != path:
            self.storage.delete(stored)

    def exists(self, name: str) -> bool:
        return self.storage.exists(self._path(name))


def model_cache() -> Path | StorageCacheStore:
    """Where jobs cache model outputs; pass it as ``cache_dir`` to ``models/``.

    Artifacts in a folder (one host, or a folder every host mounts): the folder
    ``settings.FRUGAL_MODEL_CACHE_DIR`` (by default ``model-cache/`` beside the artifacts),
    written with atomic renames. Artifacts in object storage (several hosts): ``model-cache/``
    in that storage, which every worker reads and writes.
    """
    storage = artifact_storage()
    if isinstance(storage, FileSystemStorage):
        return Path(settings.FRUGAL_MODEL_CACHE_DIR)
    return StorageCacheStore(storage)
