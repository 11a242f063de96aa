from django import template

from apps.guidelines.services import guidelines_for, render_markdown

register = template.Library()


@register.inclusion_tag("guidelines/_panel_body.html", takes_context=True)
def guidelines_panel(context, project, open_panel=False):
    """The project's guidelines as a collapsible panel (nothing when there are none)."""
    guidelines = guidelines_for(project=project) if project is not None else None
    return {
        "project": project,
        "guidelines": guidelines,
        "html": render_markdown(guidelines.text) if guidelines else "",
        "is_admin": getattr(project, "user_role", None) == "admin",
        "open_panel": open_panel,
    }
