"""Two default installations on one host get different queue names, worker and cache keys."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps([s.FRUGAL_QUEUE_PREFIX, s.FRUGAL_WORKER_NAME, s.FRUGAL_INSTALLATION_ID]))"
)


def settings_in(var_dir: Path, **extra: str) -> list[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FRUGAL_QUEUE_PREFIX", "FRUGAL_WORKER_NAME"}
    }
    env.update(
        {"DJANGO_SETTINGS_MODULE": "apps.frugal.settings", "FRUGAL_VAR_DIR": str(var_dir), **extra}
    )
    code = "import django; django.setup(); " + PROBE
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_prefix_differs_per_installation_and_is_stable(tmp_path):
    first = settings_in(tmp_path / "one")
    second = settings_in(tmp_path / "two")
    assert first[0] != second[0] and first[1] != second[1]
    assert first[0].startswith("frugal-") and first[0].endswith("-")
    assert first[2] in first[0] and first[2] in first[1]
    assert settings_in(tmp_path / "one") == first  # a restart keeps its queues


def test_environment_overrides_the_default(tmp_path):
    prefix, worker, _ = settings_in(
        tmp_path / "one", FRUGAL_QUEUE_PREFIX="", FRUGAL_WORKER_NAME="w1@host"
    )
    assert (prefix, worker) == ("", "w1@host")
