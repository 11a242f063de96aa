"""Artifacts: files jobs produce (model weights, LM caches), kept in the ``artifacts`` storage.

Everything goes through ``django.core.files.storage.storages["artifacts"]`` — a local folder by
default, S3-compatible storage (django-storages) when several hosts must share artifacts — so a
worker on one machine can save what a web process or another worker opens on another.
"""

import re
import uuid
from typing import IO

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import storages
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
