"""Every URL pattern, visited as anonymous, outsider, annotator of another project, annotator
and admin, answers as ``url_access.ACCESS`` says — and a URL without an entry there fails.

The routes come from the resolver (see ``test_permission_walk``), so a view anyone adds is
walked the moment its pattern exists; its expected access is one line in ``url_access.py``.
After the walk, nothing in the database changed (refused writes are attempted too).
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from apps.jobs.artifacts import artifact_storage
from apps.projects.models import Membership, Project, Role
from tests.api.test_permission_walk import (
    SECRET,
    _is_concrete,
    _route_text,
    argument_names,
    body_of,
    build_world,
    fill,
    iter_routes,
    snapshot,
)
from tests.api.url_access import ACCESS

LEVELS = {"public", "user", "staff", "member", "admin", "member+admin-writes"}
WRITES = ["post", "put", "patch", "delete"]


def named_routes(resolver=None, prefix: str = "", namespace: str = ""):
    """``(route, name)`` of every URL pattern; the name is ``namespace:name``, or the route
    itself for an unnamed pattern."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from named_routes(pattern, prefix + _route_text(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            route = prefix + _route_text(pattern.pattern)
            if pattern.name:
                yield route, f"{namespace}:{pattern.name}" if namespace else pattern.name
            else:
                yield route, route


ROUTE_NAMES = dict(named_routes())


def url_key(route: str) -> str:
    return ROUTE_NAMES[route]


def walked_routes() -> list[str]:
    return sorted(r for r in ROUTE_NAMES if _is_concrete(r) and not r.startswith("django-admin/"))


def expectation(route: str) -> str:
    return ACCESS.get(url_key(route), "")


def test_every_url_has_an_access_expectation():
    missing = [f"{url_key(r)!r} ({r})" for r in walked_routes() if url_key(r) not in ACCESS]
    assert not missing, (
        "These URLs have no access expectation. Add one line per URL to ACCESS in "
        "tests/api/url_access.py (public, user, staff, member, admin or "
        "member+admin-writes):\n  " + "\n  ".join(missing)
    )
    unknown = {name: level for name, level in ACCESS.items() if level not in LEVELS}
    assert not unknown, unknown
    stale = set(ACCESS) - {url_key(r) for r in walked_routes()}
    assert not stale, f"ACCESS names URLs that no longer exist: {sorted(stale)}"


@pytest.fixture
def world(make_user):
    built = build_world(make_user)
    yield built
    for artifact in built["files"]:
        artifact_storage().delete(artifact.path)


@pytest.fixture
def people(world, make_user):
    project = world["project"]
    annotator = make_user("annotator-walk")
    Membership.objects.create(project=project, user=annotator, role=Role.ANNOTATOR)
    other = Project.objects.create(name="Other", labels=["A", "B"], created_by=annotator)
    stranger = make_user("other-annotator-walk")
    Membership.objects.create(project=other, user=stranger, role=Role.ANNOTATOR)
    return {
        "anonymous": None,
        "outsider": world["outsider"],
        "other-annotator": stranger,
        "annotator": annotator,
        "admin": project.memberships.get(role=Role.ADMIN).user,
    }


def _is_refused(role: str, level: str) -> bool:
    """Whether ``role`` must be kept out of a URL of this level (reads or writes)."""
    if level == "public":
        return False
    if role == "anonymous":
        return True
    if level == "user":
        return False
    if level == "staff" or role in ("outsider", "other-annotator"):
        return True
    return role == "annotator" and level == "admin"


def _request(client, method: str, url: str, api: bool):
    if method == "get":
        return client.get(url)
    if api:
        return getattr(client, method)(url, "{}", content_type="application/json")
    return getattr(client, method)(url, {})


def _refused_write(client, url: str, api: bool, allowed: tuple[int, ...]) -> list:
    """Writes a refused role tries: each must be refused (or not exist as a method)."""
    bad = []
    for method in WRITES if api else ["post"]:
        response = _request(client, method, url, api)
        if response.status_code not in (*allowed, 405):
            bad.append((method, response.status_code))
    return bad


@pytest.mark.django_db
@pytest.mark.parametrize("route", walked_routes())
def test_url_answers_every_role_as_expected(client, world, people, route):
    level = expectation(route)
    if not level:
        pytest.fail(f"no access expectation for {url_key(route)!r}: see url_access.py")
    project = world["project"]
    url = fill(route, project)
    api = route.startswith("api/")
    in_project = "project_id" in argument_names(route) or any(
        name in argument_names(route) for name in ("job_id", "pk", "rule_id", "example_id")
    )
    before = snapshot(project)
    problems = []

    for role, user in people.items():
        client.logout()
        if user is not None:
            client.force_login(user)
        refused = _is_refused(role, level)
        response = client.get(url)
        status = response.status_code
        if status == 405 and refused:  # a POST-only view: a refused role tries the POST
            response = _request(client, "post", url, api)
            status = response.status_code
        body = body_of(response)
        if status >= 500:
            problems.append((role, "server error", status))
            continue
        if status == 405 and not refused:
            continue  # a POST-only view for this role: not run here (it would change things)
        if role == "anonymous":
            if level == "public":
                ok = status < 400
            elif api and route.startswith("api/v1/") or route == "api/schema/":
                ok = status in (401, 403)
            else:
                ok = status == 302 and response["Location"].startswith("/accounts/login/")
            if level != "public":
                writes = _refused_write(client, url, api, (302, 401, 403))
                problems += [(role, "write", b) for b in writes]
        elif level in ("public", "user"):
            ok = status not in (401, 403)
        elif level == "staff":
            ok = status in (403, 404)  # nobody in the walk is staff
            problems += [(role, "write", b) for b in _refused_write(client, url, api, (403, 404))]
        elif role in ("outsider", "other-annotator"):
            ok = status == 404 if in_project else status in (403, 404)
            ok = ok and SECRET.encode() not in body
            problems += [(role, "write", b) for b in _refused_write(client, url, api, (403, 404))]
        elif role == "annotator" and level == "admin":
            ok = status == 403
            problems += [(role, "write", b) for b in _refused_write(client, url, api, (403,))]
        elif role == "annotator" and level == "member+admin-writes":
            ok = status not in (401, 403, 404)
            problems += [(role, "write", b) for b in _refused_write(client, url, api, (403,))]
        else:  # a member where members may be; the admin everywhere in the project
            ok = status not in (401, 403, 404)
        if not ok:
            problems.append((role, response.request["REQUEST_METHOD"], status))

    assert not problems, f"{url_key(route)} ({level}) at {url}: {problems}"
    assert snapshot(project) == before, f"{url} changed the database for a refused role"


ADMIN_SITE_PUBLIC = {"django-admin/login/", "django-admin/logout/", "django-admin/jsi18n/"}


@pytest.mark.django_db
def test_the_admin_site_is_for_staff_only(client, world, people):
    """Django's admin site: anonymous and non-staff users are sent to its login page."""
    project = world["project"]
    routes = sorted(
        r for r, _ in iter_routes() if r.startswith("django-admin/") and _is_concrete(r)
    )
    assert "django-admin/projects/project/" in routes
    problems = []
    for route in routes:
        if route in ADMIN_SITE_PUBLIC:
            continue
        url = fill(route, project)
        for role, user in people.items():
            client.logout()
            if user is not None:
                client.force_login(user)
            response = client.get(url)
            location = response.get("Location", "")
            if not (response.status_code == 302 and "/django-admin/login/" in location):
                problems.append((route, role, response.status_code))
    assert not problems, problems
