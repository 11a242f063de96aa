from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.guidelines.services import guidelines_for, render_markdown, save_guidelines
from apps.projects.selectors import get_project_for_user


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def edit(request, project_id: int):
    """Admins write the guidelines (Markdown) and see them rendered."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    current = guidelines_for(project=project)
    text = current.text if current else ""
    error = ""
    if request.method == "POST":
        text = request.POST.get("text", "")
        try:
            save_guidelines(project=project, user=request.user, text=text)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, "Guidelines saved.")
            return redirect("guidelines:edit", project_id=project.pk)
    return render(
        request,
        "guidelines/edit.html",
        {
            "project": project,
            "text": text,
            "error": error,
            "html": render_markdown(text),
            "current": current,
        },
        status=400 if error else 200,
    )
