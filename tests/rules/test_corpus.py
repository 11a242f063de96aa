"""The live preview's texts cache: least recently used first out, bounded by characters."""

from apps.datasets.models import Example
from apps.projects.models import Project
from apps.rules.corpus import CACHE, forget_project_texts, project_texts


def _project(name: str, texts: list[str]) -> Project:
    project = Project.objects.create(name=name, labels=["HAM", "SPAM"])
    Example.objects.bulk_create(
        Example(project=project, external_id=str(i), text=t) for i, t in enumerate(texts)
    )
    return project


def test_the_cache_keeps_recent_projects_within_its_character_bound(db, settings):
    forget_project_texts()
    settings.FRUGAL_TEXT_CACHE_CHARS = 100
    a = _project("a", ["x" * 40])
    b = _project("b", ["y" * 40])
    c = _project("c", ["z" * 40])
    first = project_texts(project=a)
    project_texts(project=b)
    assert CACHE.project_ids() == [a.pk, b.pk] and CACHE.chars() == 80
    assert project_texts(project=a) is first  # a hit: a becomes the most recent
    project_texts(project=c)  # 120 > 100: the least recently used (b) goes
    assert CACHE.project_ids() == [a.pk, c.pk] and CACHE.chars() == 80


def test_the_project_in_use_stays_even_when_it_alone_is_over_the_bound(db, settings):
    forget_project_texts()
    settings.FRUGAL_TEXT_CACHE_CHARS = 10
    a = _project("a", ["x" * 40])
    big = _project("big", ["y" * 400])
    project_texts(project=a)
    loaded = project_texts(project=big)
    assert CACHE.project_ids() == [big.pk]
    assert project_texts(project=big) is loaded  # not read again at every keystroke


def test_a_changed_project_is_read_again(db):
    forget_project_texts()
    a = _project("a", ["free money"])
    first = project_texts(project=a)
    Example.objects.create(project=a, external_id="new", text="more")
    second = project_texts(project=a)
    assert second is not first and len(second.ids) == 2 and CACHE.project_ids() == [a.pk]
