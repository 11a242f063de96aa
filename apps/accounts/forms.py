from django import forms

from apps.accounts.models import ApiToken


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        help_text="What will use it, e.g. “nightly export script”.",
    )
