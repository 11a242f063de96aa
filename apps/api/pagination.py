"""Cursor pagination for list endpoints.

Cursor pages stay fast on large tables (no ``OFFSET``) and stable while rows are added. Views
choose their ordering, which must be unique (end it with ``id``)::

    class ExampleList(ListAPIView):
        pagination_class = CursorPagination          # ordered by id
        # or: pagination_class = cursor_pagination(ordering=("-created_at", "-id"), page_size=20)
"""

from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """``?cursor=`` pages of ``page_size`` rows (``?page_size=`` up to ``max_page_size``)."""

    ordering = ("id",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000


def cursor_pagination(
    *, ordering: tuple[str, ...] = ("id",), page_size: int = 50, max_page_size: int = 1000
) -> type[CursorPagination]:
    """A :class:`CursorPagination` subclass with this ordering and page size."""
    if not ordering or ordering[-1].lstrip("-") not in {"id", "pk"}:
        raise ValueError("A cursor ordering must end with id (or pk) so that it is unique.")
    return type(
        "CursorPagination",
        (CursorPagination,),
        {"ordering": tuple(ordering), "page_size": page_size, "max_page_size": max_page_size},
    )
