from django import forms

from apps.projects.models import Project, Role, TaskType
from apps.projects.services import parse_labels

LABELS_HELP = "One per line, or comma-separated on one line. Their order is their index."


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=Project._meta.get_field("name").max_length)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    task_type = forms.ChoiceField(choices=TaskType.choices, initial=TaskType.TEXT_CLASSIFICATION)
    labels = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "HAM\nSPAM"}),
        help_text=LABELS_HELP + " Not needed for preference projects.",
        required=False,
    )

    def __init__(self, *args, task_type_locked: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if task_type_locked:
            self.fields["task_type"].disabled = True
            self.fields["task_type"].help_text = "Fixed: the project already has examples."

    def clean_labels(self) -> list[str]:
        return parse_labels(self.cleaned_data["labels"])

    def clean(self):
        cleaned = super().clean()
        task_type = cleaned.get("task_type") or (self.initial or {}).get("task_type")
        if task_type != TaskType.PREFERENCE and not cleaned.get("labels") and "labels" in cleaned:
            self.add_error("labels", "This field is required.")
        return cleaned

    @staticmethod
    def initial_for(project: Project) -> dict:
        return {
            "name": project.name,
            "description": project.description,
            "task_type": project.task_type,
            "labels": "\n".join(project.labels),
        }


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
