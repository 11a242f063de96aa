"""Prompt templates: the question a language model answers about each example (data, not code).

A template's text holds placeholders: ``{text}`` (the example), ``{e1}`` and ``{e2}`` (the two
entity mentions of a relation-extraction example) and, for masked LMs, ``{mask}`` (the answer
slot). Its ``style`` says how the answer slot is reached:

- ``plain``: the filled text is the prompt; the answer is the causal LM's next token.
- ``chat``: the filled text is one user turn in the model's chat template; the answer is the first
  token of the assistant's reply.
- ``mask``: the filled text contains ``{mask}``; the answer is a masked LM's prediction there.

Projects edit templates as dicts (``Template.from_dict`` validates them with clear messages).
``DEFAULT_TEMPLATES`` were chosen by ``python -m bench prboost_answers``
(bench/RESULTS-prboost_answers.md); ``CANDIDATE_TEMPLATES`` holds every template it compares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

TaskType = Literal["text_classification", "relation_extraction"]
Style = Literal["plain", "chat", "mask"]
STYLES = ("plain", "chat", "mask")
TASK_TYPES = ("text_classification", "relation_extraction")
PLACEHOLDERS = ("text", "e1", "e2", "mask")
MAX_TEXT_CHARS = 1000  # examples are cut here before filling (prompts stay short and fast)
MAX_TEMPLATE_CHARS = 2000
_SLOT = re.compile(r"\{([A-Za-z_0-9]*)\}")


class TemplateError(ValueError):
    """A template that cannot be used; the message says what is wrong in plain words."""


def _entity_text(span: Any) -> str:
    """An entity as text: a Span (text, start, end), a dict with "text", or a string."""
    if isinstance(span, str):
        return span
    if isinstance(span, Mapping):
        return str(span.get("text", ""))
    if isinstance(span, Sequence) and span:
        return str(span[0])
    raise TemplateError(f"an entity must be a span (text, start, end) or a string, got {span!r}")


@dataclass(frozen=True)
class Template:
    """A prompt with ``{text}`` (and ``{e1}``/``{e2}`` for relations, ``{mask}`` for masked LMs)."""

    id: str
    text: str
    task_type: TaskType = "text_classification"
    style: Style = "plain"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", self.id):
            raise TemplateError(
                f"a template id is 1-64 letters, digits or _.:- characters, got {self.id!r}"
            )
        if not isinstance(self.text, str) or not self.text.strip():
            raise TemplateError(f"template {self.id}: the text is empty")
        if len(self.text) > MAX_TEMPLATE_CHARS:
            raise TemplateError(
                f"template {self.id}: {len(self.text)} characters; the limit is "
                f"{MAX_TEMPLATE_CHARS}"
            )
        if self.task_type not in TASK_TYPES:
            raise TemplateError(
                f"template {self.id}: task_type must be one of {TASK_TYPES}, got {self.task_type!r}"
            )
        if self.style not in STYLES:
            raise TemplateError(
                f"template {self.id}: style must be one of {STYLES}, got {self.style!r}"
            )
        slots = _SLOT.findall(self.text)
        unknown = sorted({s for s in slots if s not in PLACEHOLDERS})
        if unknown:
            raise TemplateError(
                f"template {self.id}: unknown placeholder(s) "
                f"{', '.join('{' + s + '}' for s in unknown)}; "
                "use {text}, {e1}, {e2}, {mask}"
            )
        if slots.count("text") != 1:
            raise TemplateError(f"template {self.id}: needs {{text}} exactly once")
        has_entities = "e1" in slots and "e2" in slots
        if self.task_type == "relation_extraction" and not has_entities:
            raise TemplateError(
                f"template {self.id}: a relation-extraction template names both entities "
                f"with {{e1}} and {{e2}}"
            )
        if self.task_type == "text_classification" and ("e1" in slots or "e2" in slots):
            raise TemplateError(
                f"template {self.id}: {{e1}}/{{e2}} only exist for relation extraction"
            )
        n_mask = slots.count("mask")
        if self.style == "mask" and n_mask != 1:
            raise TemplateError(f"template {self.id}: a mask template needs {{mask}} exactly once")
        if self.style != "mask" and n_mask:
            raise TemplateError(
                f"template {self.id}: {{mask}} belongs to mask-style templates; a {self.style} "
                f"template's answer is the next token after it"
            )

    def render(
        self,
        text: str,
        entities: tuple[Any, Any] | None = None,
        *,
        mask_token: str = "{mask}",  # noqa: S107 - a placeholder, not a secret
        max_text_chars: int = MAX_TEXT_CHARS,
    ) -> str:
        """The filled template (chat templates: the user turn, without the chat markup)."""
        needs_entities = "{e1}" in self.text or "{e2}" in self.text
        if needs_entities and entities is None:
            raise TemplateError(f"template {self.id} names two entities: pass entities=(e1, e2)")
        values = {"text": (text or "")[:max_text_chars].strip(), "mask": mask_token}
        if entities is not None:
            values["e1"], values["e2"] = _entity_text(entities[0]), _entity_text(entities[1])
        # one pass over the template, so braces inside the example text are never re-read
        return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Template:
        if not isinstance(d, Mapping):
            raise TemplateError(f"a template must be a dict, got {type(d).__name__}")
        missing = [k for k in ("id", "text") if k not in d]
        if missing:
            raise TemplateError(f"a template needs the field(s) {', '.join(missing)}")
        unknown = sorted(set(d) - {"id", "text", "task_type", "style"})
        if unknown:
            raise TemplateError(f"a template has no field(s) {', '.join(unknown)}")
        return cls(**dict(d))


def build_prompts(
    lm: Any,
    template: Template,
    texts: Sequence[str],
    entities: Sequence[tuple[Any, Any]] | None = None,
) -> list[str]:
    """The prompts ``lm`` reads for ``texts`` under ``template`` (chat markup, mask token added)."""
    is_masked = hasattr(lm, "mask_token")
    if template.style == "mask" and not is_masked:
        raise TemplateError(f"template {template.id} has a {{mask}} slot: it needs a masked LM")
    if template.style != "mask" and is_masked:
        raise TemplateError(
            f"template {template.id} is a {template.style} template: a masked LM needs a "
            f"mask-style template"
        )
    if entities is not None and len(entities) != len(texts):
        raise TemplateError(f"{len(entities)} entity pairs for {len(texts)} texts")
    mask = lm.mask_token if is_masked else "{mask}"
    out = []
    for i, text in enumerate(texts):
        filled = template.render(
            text, entities[i] if entities is not None else None, mask_token=mask
        )
        out.append(lm.format_chat(filled) if template.style == "chat" else filled)
    return out


def templates_by_id(templates: Sequence[Template]) -> dict[str, Template]:
    out: dict[str, Template] = {}
    for t in templates:
        if t.id in out:
            raise TemplateError(f"two templates share the id {t.id!r}")
        out[t.id] = t
    return out


_TC = "text_classification"
_RE = "relation_extraction"

CANDIDATE_TEMPLATES: dict[str, list[Template]] = {
    _TC: [
        Template("tc-about", "{text}\nThis text is about", _TC),
        Template("tc-comment-about", "{text}\nThis comment is about", _TC),
        Template("tc-category", "{text}\nCategory:", _TC),
        Template("tc-one-word", "{text}\nIn one word, this is", _TC),
        Template("tc-asks-for", "{text}\nThe answer to this is a", _TC),
        Template(
            "tc-chat-topic",
            'Text: "{text}"\nWhat is this text about? Answer with one word.',
            _TC,
            "chat",
        ),
        Template("tc-mask-about", "{text} This text is about {mask}.", _TC, "mask"),
    ],
    _RE: [
        Template("re-relation", 'In "{text}", the relation between "{e1}" and "{e2}" is', _RE),
        Template("re-e1-is-the", '{text}\nWith respect to "{e2}", "{e1}" is the', _RE),
        Template("re-e1-of-e2", '{text}\n"{e1}" is the ... of "{e2}". The missing word is', _RE),
        Template(
            "re-chat-relation",
            'Sentence: "{text}"\nHow is "{e1}" related to "{e2}"? Answer with one word.',
            _RE,
            "chat",
        ),
        Template("re-mask-relation", '{text} "{e1}" is the {mask} of "{e2}".', _RE, "mask"),
    ],
}

# Chosen by ``python -m bench prboost_answers`` (bench/RESULTS-prboost_answers.md): plain
# continuation beat the chat template on all four sets; no text-classification template wins
# everywhere ("This text is about" is best on sms, "The answer to this is a" on trec questions,
# 0.67 vs 0.30 held-out precision of the top-10), so both are defaults; for relations
# 're-relation' alone beat every other template and the pair (0.60 vs 0.53).
_DEFAULT_IDS: dict[str, tuple[str, ...]] = {
    _TC: ("tc-about", "tc-asks-for"),
    _RE: ("re-relation",),
}
_DEFAULT_MASK_IDS: dict[str, tuple[str, ...]] = {
    _TC: ("tc-mask-about",),
    _RE: ("re-mask-relation",),
}


def _pick(ids: Mapping[str, tuple[str, ...]]) -> dict[str, list[Template]]:
    by_id = {t.id: t for ts in CANDIDATE_TEMPLATES.values() for t in ts}
    return {task: [by_id[i] for i in chosen] for task, chosen in ids.items()}


DEFAULT_TEMPLATES: dict[str, list[Template]] = _pick(_DEFAULT_IDS)
"""Causal-LM templates per task type (the benchmark's winners)."""

DEFAULT_MASK_TEMPLATES: dict[str, list[Template]] = _pick(_DEFAULT_MASK_IDS)
"""Masked-LM templates per task type."""
