from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import TokenCreateForm
from apps.accounts.selectors import tokens_for_user
from apps.accounts.services import create_api_token, revoke_api_token


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """Log out by POST only (Django refuses GET), then back to the login page."""


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:tokens")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """List the user's tokens; POST creates one and shows its secret on this response only."""
    new_token = new_secret = None
    if request.method == "POST":
        form = TokenCreateForm(request.POST)
        if form.is_valid():
            try:
                new_token, new_secret = create_api_token(
                    user=request.user, name=form.cleaned_data["name"]
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                form = TokenCreateForm()
    else:
        form = TokenCreateForm()
    return render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "tokens": tokens_for_user(user=request.user),
            "new_token": new_token,
            "new_secret": new_secret,
        },
        status=400 if request.method == "POST" and new_token is None else 200,
    )


@login_required
@require_POST
def revoke_token(request, token_id: int):
    # Another user's token id is a 404, like a token that does not exist.
    token = get_object_or_404(tokens_for_user(user=request.user), pk=token_id)
    revoke_api_token(token=token, user=request.user)
    if request.htmx:
        return render(
            request, "accounts/_token_list.html", {"tokens": tokens_for_user(user=request.user)}
        )
    messages.success(request, f"Token “{token.name}” was revoked; it no longer works.")
    return redirect("accounts:tokens")
