"""PRBoost settings: validation, storage in project.settings["prboost"], template preview."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.datasets.models import Example
from apps.training import services
from apps.training.prboost_settings import DEFAULTS, prboost_settings

pytestmark = pytest.mark.django_db


def test_defaults_fill_in_missing_settings(project):
    assert prboost_settings(project) == DEFAULTS


def test_valid_settings_are_stored_under_prboost(project, admin_user):
    templates = [{"id": "mine", "text": "{text}\nThis comment is"}]
    services.update_prboost_settings(
        project=project,
        user=admin_user,
        data={"proposer": "ngram", "top_k": 5, "templates": templates},
    )
    project.refresh_from_db()
    stored = project.settings["prboost"]
    assert stored["proposer"] == "ngram" and stored["top_k"] == 5
    assert stored["templates"][0]["id"] == "mine"
    assert stored["templates"][0]["task_type"] == "text_classification"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"proposer": "gpt"}, "proposer"),
        ({"top_k": 0}, "top_k"),
        ({"candidates_per_round": "ten"}, "candidates_per_round"),
        ({"proposer": "masked"}, "language_model"),
        ({"templates": [{"id": "x", "text": "no slot"}]}, "templates"),
        ({"templates": [{"id": "x", "text": "{text} {e1}"}]}, "templates"),
        ({"auto_next_round": "yes"}, "auto_next_round"),
        ({"end_model": "gpt"}, "end_model"),
        ({"encoder": 3}, "encoder"),
    ],
)
def test_bad_settings_are_refused_with_a_message_and_change_nothing(
    project, admin_user, data, field
):
    with pytest.raises(ValidationError) as caught:
        services.update_prboost_settings(project=project, user=admin_user, data=data)
    assert field in caught.value.message_dict
    project.refresh_from_db()
    assert "prboost" not in project.settings


def test_defaults_are_the_ngram_proposer_and_an_end_model_chosen_on_dev(project, admin_user):
    assert DEFAULTS["proposer"] == "ngram" and DEFAULTS["end_model"] == "auto"
    services.update_prboost_settings(
        project=project, user=admin_user, data={"end_model": "tfidf", "encoder": "  x/y "}
    )
    project.refresh_from_db()
    stored = project.settings["prboost"]
    assert stored["end_model"] == "tfidf" and stored["encoder"] == "x/y"


def test_annotators_cannot_change_settings(project, annotator):
    with pytest.raises(PermissionDenied):
        services.update_prboost_settings(project=project, user=annotator, data={"top_k": 3})


def test_template_preview_renders_on_a_real_example(project):
    Example.objects.create(
        project=project, external_id="d1", split="dev", text="check out my channel", gold_label=1
    )
    preview = services.template_preview(
        project=project, template={"id": "t", "text": "{text}\nThis comment is about"}
    )
    assert preview["error"] is None
    assert preview["prompt"] == "check out my channel\nThis comment is about"
    bad = services.template_preview(project=project, template={"id": "t", "text": "no slot"})
    assert "{text}" in bad["error"]
