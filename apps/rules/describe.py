"""Rules in plain words, with the project's label names and templates (pages and services)."""

from __future__ import annotations

from collections.abc import Mapping

from apps.projects.models import Project


def label_names(project: Project) -> list[str]:
    """The project's label names, by label index."""
    return [str(name) for name in (project.labels or [])]


def describe(rule, project: Project) -> str:
    """The rule in plain words, with the project's label names and templates."""
    return rule.describe(label_names(project), _project_templates(project))


def _template_phrase(text: str) -> str:
    """A template as people read it: the example's slot dropped, the answer slot as "…"."""
    text = text.replace("{text}", "").replace("{mask}", "…").replace("<mask>", "…")
    text = text.replace("{e1}", "[entity 1]").replace("{e2}", "[entity 2]")
    text = " ".join(text.split())
    return text if "…" in text else f"{text} …"


def _project_templates(project: Project) -> dict[str, str]:
    """Template id → readable text: the library's templates, then the project's own
    (``settings["prboost"]["templates"]`` or ``settings["templates"]``: lists of {id, text})."""
    from models.prboost.templates import CANDIDATE_TEMPLATES, DEFAULT_MASK_TEMPLATES

    out: dict[str, str] = {}
    for group in (CANDIDATE_TEMPLATES, DEFAULT_MASK_TEMPLATES):
        for templates in group.values():
            for template in templates:
                out[template.id] = _template_phrase(template.text)
    settings_ = project.settings or {}
    prboost = settings_.get("prboost") if isinstance(settings_.get("prboost"), Mapping) else {}
    for custom in (prboost.get("templates"), settings_.get("templates")):
        if isinstance(custom, list):
            for item in custom:
                if isinstance(item, Mapping) and item.get("id") and item.get("text"):
                    out[str(item["id"])] = _template_phrase(str(item["text"]))
    return out
