"""The cursor pagination helper other list endpoints use."""

import pytest

from apps.api.pagination import CursorPagination, cursor_pagination


def test_cursor_pagination_defaults_to_id_order():
    assert CursorPagination.ordering == ("id",)
    assert CursorPagination.page_size_query_param == "page_size"


def test_cursor_pagination_factory_sets_ordering_and_page_size():
    paginator = cursor_pagination(ordering=("-created_at", "-id"), page_size=20)
    assert issubclass(paginator, CursorPagination)
    assert (paginator.ordering, paginator.page_size) == (("-created_at", "-id"), 20)


def test_cursor_pagination_refuses_an_ordering_that_is_not_unique():
    with pytest.raises(ValueError, match="end with id"):
        cursor_pagination(ordering=("created_at",))


@pytest.mark.django_db
def test_page_size_is_capped(client, make_user):
    from apps.accounts.services import create_api_token
    from apps.projects.models import Project

    root = make_user("root", is_superuser=True, is_staff=True)
    for i in range(3):
        Project.objects.create(name=f"P{i}", labels=["a", "b"])
    _, secret = create_api_token(user=root, name="t")
    page = client.get(
        "/api/v1/projects/?page_size=100000", HTTP_AUTHORIZATION=f"Bearer {secret}"
    ).json()
    assert len(page["results"]) == 3 and page["next"] is None
