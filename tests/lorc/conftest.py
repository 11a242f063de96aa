"""LoRC app fixtures: a tiny causal LM as the project's LM, text, a fresh artifacts folder."""

import pytest


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path, monkeypatch):
    folder = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    monkeypatch.setenv("FRUGAL_ARTIFACT_ROOT", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> str:
    from tests.models.lm_fixtures import make_tiny_causal_lm

    return str(make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal-lm")))


@pytest.fixture
def lm_project(project, settings, tiny_lm_dir, tmp_path):
    """The shared ``project`` with 240 pool and 40 dev texts and the tiny LM as its causal LM."""
    from apps.datasets.models import Example
    from tests.models.lm_fixtures import WORDS

    settings.FRUGAL_CAUSAL_LM = tiny_lm_dir
    settings.FRUGAL_MODEL_CACHE_DIR = tmp_path / "model-cache"
    rows = []
    for i in range(280):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)]
        split = "dev" if i < 40 else "pool"
        rows.append(Example(project=project, external_id=f"e{i}", split=split,
                            text=" ".join(words) + "."))  # fmt: skip
    Example.objects.bulk_create(rows)
    # The web default proposes n-grams; LoRC compresses the causal LM of LM prompting.
    project.settings = {**(project.settings or {}), "prboost": {"proposer": "causal"}}
    project.save(update_fields=["settings"])
    return project
