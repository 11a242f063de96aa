"""Several annotators at once, each thread on its own database connection (PostgreSQL)."""

import threading

import pytest
from django.db import connection, connections

from apps.rules import services
from apps.rules.models import Rule, RuleDecision, RuleStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "concurrent connections need PostgreSQL (DATABASE_URL=postgres://...); an in-memory "
            "SQLite test database is not shared between threads"
        )


def run_together(*jobs):
    """Run the callables at the same moment in threads; return their results or exceptions."""
    barrier = threading.Barrier(len(jobs))
    results = [None] * len(jobs)

    def worker(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_annotators_deciding_the_same_suggestion_one_stands_the_other_is_told(
    project, suggestions, annotator, second_annotator
):
    rule = suggestions[0]
    for _ in range(5):  # several rounds of the race, each on a fresh version
        version = Rule.objects.get(pk=rule.pk).version
        results = run_together(
            lambda v=version: services.decide(
                rule=rule, user=annotator, action="accept", expected_version=v
            ),
            lambda v=version: services.decide(
                rule=rule, user=second_annotator, action="reject", expected_version=v
            ),
        )
        conflicts = [r for r in results if isinstance(r, services.RuleConflict)]
        stood = [r for r in results if isinstance(r, Rule)]
        assert len(conflicts) == 1 and len(stood) == 1, results
        assert "already" in conflicts[0].message
        fresh = Rule.objects.get(pk=rule.pk)
        assert fresh.version == version + 1
        assert fresh.status == stood[0].status
    assert RuleDecision.objects.filter(rule=rule).count() == 5


def test_concurrent_claims_hand_out_different_suggestions(project, suggestions, make_user):
    from apps.projects.models import Membership

    users = []
    for i in range(4):
        user = make_user(f"reviewer{i}")
        Membership.objects.create(project=project, user=user, role="annotator")
        users.append(user)
    results = run_together(
        *[(lambda u=u: services.next_suggestion_for(project=project, user=u)) for u in users]
    )
    assert all(isinstance(r, Rule) for r in results), results
    assert len({r.pk for r in results}) == 4
    claimed = Rule.objects.filter(project=project, status=RuleStatus.SUGGESTED)
    assert sorted(claimed.values_list("claimed_by_id", flat=True)) == sorted(u.pk for u in users)
