"""Every endpoint and every project page, found by walking the URL resolver, refuses strangers.

Nothing here lists endpoints by hand: a view anyone adds under ``/api/v1/``, ``/projects/<id>/``
or ``/jobs/`` is covered the moment its URL pattern exists. For each pattern the walk fills the
URL arguments with real objects of a project (its id, one of its examples, jobs, memberships...)
and checks that

- anonymous API calls get 401/403, anonymous page visits are sent to the login page;
- a logged-in user who is not a member gets 404 for anything of the project (exactly what a
  project that does not exist gets, so existence does not leak), 403/404 for objects outside
  projects, and never sees the project's data in collection responses;
- after all of that, nothing in the database changed.

A URL argument is filled from the model its name points to (``example_id`` → Example, ``pk``
after ``jobs/`` → Job) with a row belonging to the project; a model the fixture creates no row
for gets an id that does not exist, which still exercises the permission path. When you add a
project-owned model with its own URLs, add a row for it in ``world`` below.
"""

import re

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern

from apps.accounts.services import create_api_token
from apps.datasets.models import Example
from apps.distill.models import DistillRun, Student
from apps.jobs.artifacts import artifact_storage, save_artifact
from apps.jobs.models import Artifact, Job
from apps.projects.models import Membership, Project, Role
from apps.rules.models import Rule

SECRET = "Zebra7781"  # appears in the project's name and data; strangers must never see it
MISSING_ID = 987654321
API_METHODS = ["get", "post", "put", "patch", "delete"]
PAGE_METHODS = ["get", "post"]


def iter_routes(resolver=None, prefix: str = ""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from iter_routes(pattern, prefix + _route_text(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + _route_text(pattern.pattern), pattern


def _route_text(pattern) -> str:
    if isinstance(pattern, RoutePattern):
        return str(pattern)
    # Regex patterns (DRF routers): turn named groups into <name> and drop anchors.
    text = str(pattern.regex.pattern).lstrip("^").rstrip("$")
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", text)
    return text.replace("\\", "")


def _is_concrete(route: str) -> bool:
    return not re.search(r"[()\[\]*+?|]", re.sub(r"<[^>]+>", "", route)) and "<format>" not in route


def argument_names(route: str) -> list[str]:
    return re.findall(r"<(?:\w+:)?(\w+)>", route)


def routes_under(*prefixes: str) -> list[str]:
    return sorted(
        {route for route, _ in iter_routes() if route.startswith(prefixes) and _is_concrete(route)}
    )


API_ROUTES = routes_under("api/v1/")
# Pages of one project, and every jobs page.
PAGE_ROUTES = [
    r
    for r in routes_under("projects/", "jobs/")
    if r.startswith("jobs/") or "project_id" in argument_names(r)
]


def model_for_argument(route: str, name: str):
    """The model an URL argument names: ``example_id`` → Example; ``pk`` → the path before it."""
    if name in {"pk", "id"}:
        before = route.split(f"<int:{name}>")[0].split(f"<{name}>")[0].rstrip("/").split("/")
        stem = before[-1] if before else ""
        stem = stem[:-1] if stem.endswith("s") else stem
    else:
        stem = name.removesuffix("_id").removesuffix("_pk")
    key = stem.replace("_", "").replace("-", "").lower()
    for model in apps.get_models():
        if model._meta.model_name == key:
            return model
    return None


@pytest.fixture
def world(make_user):
    """A project with one of everything, an outsider with a token, and a DB snapshot."""
    built = build_world(make_user)
    yield built
    for artifact in built["files"]:
        artifact_storage().delete(artifact.path)


def build_world(make_user) -> dict:
    """The ``world`` fixture's objects (other walks build on it)."""
    owner = make_user("owner-walk")
    project = Project.objects.create(
        name=f"{SECRET} project", labels=["HAM", "SPAM"], created_by=owner
    )
    Membership.objects.create(project=project, user=owner, role=Role.ADMIN)
    Example.objects.create(
        project=project, external_id=f"{SECRET}-1", text=f"{SECRET} text", split="dev"
    )
    job = Job.objects.create(project=project, kind="import", launched_by=owner, message=SECRET)
    Artifact.objects.create(project=project, job=job, kind="model", name=SECRET, path="x")
    Rule.objects.create(
        project=project,
        kind="keyword",
        definition={"kind": "keyword", "words": [SECRET], "label": 1},
        key=SECRET,
        key_hash=SECRET,
        label=1,
        description=SECRET,
        round_number=1,
    )
    student_file = save_artifact(
        project=project, job=job, kind="distill_student", name=SECRET, fileobj_or_bytes=b"tar"
    )
    Student.objects.create(
        project=project,
        run=DistillRun.objects.create(project=project, job=job),
        loss="kd",
        artifact=student_file,
    )
    outsider = make_user("outsider-walk")
    _, secret = create_api_token(user=outsider, name="walk")
    return {"project": project, "outsider": outsider, "token": secret, "files": [student_file]}


def object_for(model, project):
    if model is Project:
        return project
    field_names = {f.name for f in model._meta.get_fields()}
    if "project" in field_names:
        return model.objects.filter(project=project).order_by("pk").first()
    return None


def fill(route: str, project, *, project_id: int | None = None) -> str:
    url = "/" + route
    for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", route):
        if name == "project_id":
            value = project.pk if project_id is None else project_id
        elif converter == "uuid":
            value = "00000000-0000-4000-8000-000000000000"
        else:
            model = model_for_argument(route, name)
            obj = object_for(model, project) if model else None
            value = obj.pk if obj is not None else MISSING_ID
        url = re.sub(rf"<(?:\w+:)?{name}>", str(value), url, count=1)
    return url


def snapshot(project) -> dict:
    """Everything a stranger could try to change."""
    project = Project.objects.get(pk=project.pk)
    return {
        "project": (project.name, project.description, project.task_type, project.labels),
        "members": sorted(project.memberships.values_list("user_id", "role")),
        "examples": sorted(
            Example.objects.filter(project=project).values_list(
                "pk", "split", "text", "gold_label", "label", "confidence"
            )
        ),
        "jobs": sorted(
            Job.objects.filter(project=project).values_list("pk", "status", "cancel_requested")
        ),
        "job_count": Job.objects.count(),
        "artifacts": sorted(Artifact.objects.filter(project=project).values_list("pk", "name")),
        "project_count": Project.objects.count(),
    }


def body_of(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def call(client, method: str, url: str, **headers):
    kwargs = {"content_type": "application/json"} if method != "get" else {}
    data = {} if method == "get" else "{}"
    return getattr(client, method)(url, data, **kwargs, **headers)


@pytest.mark.django_db
def test_walk_finds_the_endpoints_and_pages(world):
    assert "api/v1/projects/" in API_ROUTES
    assert "api/v1/projects/<int:project_id>/" in API_ROUTES
    assert "projects/<int:project_id>/settings/" in PAGE_ROUTES
    for route in API_ROUTES + PAGE_ROUTES:
        assert resolve(fill(route, world["project"]).split("?")[0]), route


def callbacks(prefixes: tuple[str, ...]):
    for route, pattern in iter_routes():
        if route.startswith(prefixes):
            yield route, pattern.callback


def test_every_api_view_authenticates_by_token_or_csrf_checked_session_and_has_permissions():
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.permissions import AllowAny
    from rest_framework.views import APIView

    from apps.accounts.authentication import ApiTokenAuthentication

    for route, callback in callbacks(("api/v1/",)):
        view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        assert view is not None and issubclass(view, APIView), f"{route} is not a DRF view"
        assert set(view.authentication_classes) <= {ApiTokenAuthentication, SessionAuthentication}
        assert view.permission_classes, route
        assert AllowAny not in view.permission_classes, route


def test_no_page_skips_csrf_protection():
    for route, callback in callbacks(("projects/", "jobs/", "accounts/")):
        assert not getattr(callback, "csrf_exempt", False), f"{route} is csrf_exempt"


@pytest.mark.django_db
@pytest.mark.parametrize("route", API_ROUTES + PAGE_ROUTES)
def test_walk_urls_open_for_the_project_admin(client, world, route):
    """The filled URLs are real: the project's admin is let in (so 404s above mean refusals)."""
    project = world["project"]
    client.force_login(project.memberships.get(role=Role.ADMIN).user)
    response = client.get(fill(route, project))
    assert response.status_code not in (401, 403, 404), (route, response.status_code)
    assert response.status_code < 500


# --- API ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", API_ROUTES)
def test_api_refuses_anonymous_callers(client, world, route):
    url = fill(route, world["project"])
    before = snapshot(world["project"])
    statuses = {method: call(client, method, url).status_code for method in API_METHODS}
    assert all(s in (401, 403, 405) for s in statuses.values()), (url, statuses)
    assert any(s in (401, 403) for s in statuses.values()), (url, statuses)
    assert snapshot(world["project"]) == before


@pytest.mark.django_db
@pytest.mark.parametrize("route", API_ROUTES)
def test_api_hides_projects_from_outsiders(client, world, route):
    project = world["project"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world['token']}"}
    url = fill(route, project)
    before = snapshot(project)
    for method in API_METHODS:
        response = call(client, method, url, **auth)
        body = body_of(response)
        assert SECRET.encode() not in body, (method, url, response.status_code)
        if "project_id" in argument_names(route):
            assert response.status_code in (404, 405), (method, url, response.status_code)
            missing = call(client, method, fill(route, project, project_id=MISSING_ID), **auth)
            assert missing.status_code == response.status_code, (method, url)
        elif argument_names(route):
            assert response.status_code in (403, 404, 405), (method, url, response.status_code)
        else:
            assert response.status_code < 500, (method, url)
    if not argument_names(route):
        # Collections: asking for the project by filter shows nothing of it either.
        for query in (f"?project={project.pk}", f"?project_id={project.pk}"):
            response = client.get(url + query, **auth)
            assert SECRET.encode() not in body_of(response), url + query
    assert snapshot(project) == before


# --- pages --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", PAGE_ROUTES)
def test_pages_send_anonymous_visitors_to_login(client, world, route):
    url = fill(route, world["project"])
    before = snapshot(world["project"])
    for method in PAGE_METHODS:
        response = getattr(client, method)(url)
        if response.status_code == 405:
            continue
        assert response.status_code in (302, 401, 403), (method, url, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith("/accounts/login/"), (method, url)
    assert snapshot(world["project"]) == before


@pytest.mark.django_db
@pytest.mark.parametrize("route", PAGE_ROUTES)
def test_pages_hide_projects_from_outsiders(client, world, route):
    project = world["project"]
    client.force_login(world["outsider"])
    url = fill(route, project)
    before = snapshot(project)
    for method in PAGE_METHODS:
        response = getattr(client, method)(url)
        assert SECRET.encode() not in body_of(response), (method, url, response.status_code)
        if "project_id" in argument_names(route):
            assert response.status_code in (404, 405), (method, url, response.status_code)
            missing = getattr(client, method)(fill(route, project, project_id=MISSING_ID))
            assert missing.status_code == response.status_code, (method, url)
        elif argument_names(route):
            assert response.status_code in (403, 404, 405), (method, url, response.status_code)
        else:
            assert response.status_code < 500, (method, url)
            response = client.get(f"{url}?project={project.pk}")
            assert SECRET.encode() not in body_of(response), url
    assert snapshot(project) == before
