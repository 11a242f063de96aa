"""``manage.py load_demo``: demo accounts and the "YouTube spam (demo)" project. Idempotent.

Creates ``admin`` (staff, admin of the demo project; not a superuser) and ``annotator``.
Passwords come from ``FRUGAL_DEMO_PASSWORD``, else are generated once and kept in
``var/demo_credentials.txt``. The project's data is ``FRUGAL_DATA_DIR/wrench-youtube``, imported
synchronously through the same import pipeline the import jobs use (so ``make run`` is
deterministic); without that folder the accounts and the empty project are still created.
"""

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.datasets.pipeline import ImportFailed, ImportOptions, import_examples
from apps.projects.models import Membership, Project, Role, TaskType

DEMO_PROJECT = "YouTube spam (demo)"
DEMO_USERS = (("admin", Role.ADMIN), ("annotator", Role.ANNOTATOR))
DEFAULT_LABELS = ["HAM", "SPAM"]


def credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_credentials.txt"


def _stored_passwords() -> dict[str, str]:
    path = credentials_file()
    if not path.exists():
        return {}
    stored = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        user, _, password = line.partition(":")
        stored[user.strip()] = password.strip()
    return stored


def _store_passwords(passwords: dict[str, str]) -> None:
    path = credentials_file()
    lines = ["# Frugal demo accounts (manage.py load_demo). Delete this file to get new ones."]
    lines += [f"{user}: {password}" for user, password in passwords.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


class Command(BaseCommand):
    help = "Create the demo accounts and the YouTube spam demo project (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--data-dir",
            default=None,
            help="Folder holding wrench-youtube/ (default: settings.FRUGAL_DATA_DIR).",
        )

    def handle(self, *args, **options):
        data_dir = Path(options["data_dir"] or settings.FRUGAL_DATA_DIR)
        folder = data_dir / "wrench-youtube"
        passwords = self._users()
        project = self._project(folder)
        self._data(project, folder)
        self._print_login(passwords)

    def _users(self) -> dict[str, str]:
        User = get_user_model()
        from_env = os.environ.get("FRUGAL_DEMO_PASSWORD", "")
        stored = {} if from_env else _stored_passwords()
        passwords: dict[str, str] = {}
        changed = False
        with transaction.atomic():
            for username, role in DEMO_USERS:
                user = User.objects.filter(username=username).first()
                created = user is None
                if created:
                    user = User(username=username, email=f"{username}@example.invalid")
                password = from_env or stored.get(username)
                if password is None:
                    password = secrets.token_urlsafe(12)
                    changed = True
                if created or from_env or changed or not user.check_password(password):
                    user.set_password(password)
                user.is_staff = role == Role.ADMIN
                user.is_active = True
                user.save()
                passwords[username] = password
                verb = "Created" if created else "Kept"
                self.stdout.write(f"{verb} user '{username}' ({role}).")
        if not from_env and (changed or stored != passwords):
            _store_passwords(passwords)
        return passwords

    def _project(self, folder: Path) -> Project:
        User = get_user_model()
        labels = DEFAULT_LABELS
        label_file = folder / "label.json"
        if label_file.exists():
            raw = json.loads(label_file.read_text(encoding="utf-8"))
            labels = [raw[str(i)] for i in range(len(raw))]
        with transaction.atomic():
            project = Project.objects.filter(name=DEMO_PROJECT).order_by("id").first()
            if project is None:
                project = Project.objects.create(
                    name=DEMO_PROJECT,
                    description=(
                        "YouTube comments, spam or not (WRENCH youtube: 10 labeling-function "
                        "votes per comment). Pool unlabeled, dev and test gold."
                    ),
                    task_type=TaskType.TEXT_CLASSIFICATION,
                    labels=labels,
                    created_by=User.objects.get(username="admin"),
                )
                self.stdout.write(f"Created project '{DEMO_PROJECT}'.")
            for username, role in DEMO_USERS:
                Membership.objects.update_or_create(
                    project=project,
                    user=User.objects.get(username=username),
                    defaults={"role": role},
                )
        return project

    def _data(self, project: Project, folder: Path) -> None:
        if not folder.is_dir():
            self.stdout.write(
                self.style.WARNING(
                    f"Demo data not found at {folder} (set FRUGAL_DATA_DIR to the folder holding "
                    "wrench-youtube/): the demo project has no examples; import data from its "
                    "Import page."
                )
            )
            return
        count = project.examples.count()
        if count:
            self.stdout.write(f"Demo data already loaded ({count:,} examples).")
            return
        try:
            summary = import_examples(
                project=project,
                path=folder,
                options=ImportOptions(format="wrench", display_name="wrench-youtube"),
            )
        except ImportFailed as exc:
            self.stderr.write(exc.message)
            raise
        splits = ", ".join(f"{n:,} {split}" for split, n in summary["splits"].items())
        self.stdout.write(self.style.SUCCESS(f"Imported the demo data: {splits}."))

    def _print_login(self, passwords: dict[str, str]) -> None:
        where = (
            "from FRUGAL_DEMO_PASSWORD"
            if os.environ.get("FRUGAL_DEMO_PASSWORD")
            else f"kept in {credentials_file()}"
        )
        self.stdout.write("")
        self.stdout.write(f"Log in at /accounts/login/ with (passwords {where}):")
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {username:<10} {passwords[username]:<20} ({role} of the demo)")
