"""Team features in Chromium: agreement with two annotators and an adjudicating admin, invite
links, and guidelines beside labeling. Each new page is shot at desktop and phone width
(390 px); with FRUGAL_DOC_SCREENSHOTS=1 the shots also go to docs/screenshots/."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.agreement import services as agreement
from apps.agreement.models import AnnotatorLabel
from apps.datasets.models import Example
from apps.guidelines.services import save_guidelines
from apps.projects.models import Membership, Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def card_example_id(page) -> int:
    return int(page.locator("#label-text").get_attribute("data-example-id"))


def log_out(page):
    page.context.clear_cookies()


def label_all(page, project, key: str) -> list[int]:
    """Label everything offered with one key; the ids labeled, in order."""
    page.goto(reverse("datasets:label", args=[project.pk]) + "?split=dev")
    seen = []
    while page.locator("#label-text").count():
        current = card_example_id(page)
        seen.append(current)
        page.keyboard.press(key)
        page.wait_for_function(
            "id => !document.getElementById('label-text') || "
            "document.getElementById('label-text').dataset.exampleId !== String(id)",
            arg=current,
        )
    return seen


def test_two_annotators_agree_and_an_admin_decides_the_conflict(
    project, admin_user, annotator, make_user, login, shots
):
    bob = make_user("bob")
    Membership.objects.create(project=project, user=bob, role=Role.ANNOTATOR)
    for i, text in enumerate(["Win a free phone now", "See you at lunch", "Cheap pills"]):
        Example.objects.create(project=project, external_id=f"d{i}", text=text, split="dev")
    save_guidelines(project=project, user=admin_user, text="Label **ads** as SPAM.")

    page = login(admin_user)
    page.goto(reverse("agreement:agreement", args=[project.pk]))
    page.fill("#id_k", "2")
    page.click("#overlap-form button[type=submit]")
    page.wait_for_selector("text=needs 2 labels")
    assert agreement.overlap_for(project=project) == 2
    log_out(page)

    page = login(annotator)
    page.goto(reverse("datasets:label", args=[project.pk]) + "?split=dev")
    assert page.locator("#overlap-note").is_visible()
    page.click("#guidelines-panel summary")  # opens, and stays open on the next card / page
    assert "ads" in page.locator("#guidelines-body").inner_text()
    shots(page, "label-overlap")
    annie_ids = label_all(page, project, "2")  # annie: everything is SPAM
    assert page.locator("#guidelines-body").is_visible()  # remembered after reloads
    assert len(annie_ids) == 3
    assert not Example.objects.filter(gold_label__isnull=False).exists()
    log_out(page)

    page = login(bob)
    seen = []
    page.goto(reverse("datasets:label", args=[project.pk]) + "?split=dev")
    while page.locator("#label-text").count():
        current = card_example_id(page)
        seen.append(current)
        text = page.locator("#label-text").inner_text()
        page.keyboard.press("1" if "lunch" in text else "2")
        page.wait_for_function(
            "id => !document.getElementById('label-text') || "
            "document.getElementById('label-text').dataset.exampleId !== String(id)",
            arg=current,
        )
    assert sorted(seen) == sorted(annie_ids)
    assert Example.objects.filter(gold_label=1).count() == 2  # the two agreed ones
    log_out(page)

    page = login(admin_user)
    page.goto(reverse("agreement:conflicts", args=[project.pk]))
    assert "lunch" in page.locator("#conflict-text").inner_text()
    assert "annie" in page.locator("#conflict-card").inner_text()
    shots(page, "conflicts")
    page.keyboard.press("1")  # HAM decides it
    page.wait_for_selector("#conflicts-done")
    lunch = Example.objects.get(external_id="d1")
    assert lunch.gold_label == 0 and lunch.gold_labeled_by == admin_user
    assert AnnotatorLabel.objects.count() == 6

    page.goto(reverse("agreement:agreement", args=[project.pk]))
    assert page.locator("#alpha").inner_text() != "—"
    assert "bob" in page.locator("#per-annotator").inner_text()
    shots(page, "agreement")


def test_invite_link_creates_an_account_in_the_project(project, admin_user, login, shots, page):
    login(admin_user)
    page.goto(reverse("projects:members", args=[project.pk]))
    page.fill("#invite-note", "carol@example.org")
    page.click("#invite-form button[type=submit]")
    page.wait_for_selector("#invite-link")
    link = page.locator("#invite-link").inner_text()
    assert re.search(r"/accounts/invite/inv_", link)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#new-invite .copy-button")
    page.wait_for_selector("#new-invite .copy-button:text('Copied')")
    assert page.evaluate("() => navigator.clipboard.readText()") == link
    shots(page, "members-invite")
    log_out(page)

    page.goto(link)
    shots(page, "invite-accept")
    page.fill("#id_username", "carol")
    page.fill("#id_password", "carol-has-a-long-pass-1")
    page.fill("#id_password2", "carol-has-a-long-pass-1")
    page.click("#invite-accept-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/projects/{project.pk}/$"))
    assert project.memberships.filter(user__username="carol", role="annotator").exists()
    log_out(page)
    page.goto(link)
    assert page.locator("h1").inner_text() == "This invite link is not valid"


def test_staff_people_page_and_guidelines_editor(project, admin_user, make_user, login, shots):
    staff = make_user("stella", is_staff=True)
    page = login(staff)
    page.goto(reverse("accounts:people"))
    page.fill("#new-username", "dora")
    page.click("#create-user-form button[type=submit]")
    page.wait_for_selector("#new-password")
    assert len(page.locator("#new-password").inner_text()) >= 12
    shots(page, "people")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-username=dora] button.danger")
    page.wait_for_selector("text=dora is deactivated")
    log_out(page)

    page = login(admin_user)
    page.goto(reverse("guidelines:edit", args=[project.pk]))
    page.fill("#id_text", "# Spam\n\n- **Ads** are SPAM\n- <script>x</script> stays text")
    page.click("#guidelines-form button[type=submit]")
    page.wait_for_selector("text=Guidelines saved")
    assert page.locator("#guidelines-preview strong").inner_text() == "Ads"
    shots(page, "guidelines")
    page.goto(reverse("projects:dashboard", args=[project.pk]))
    page.click("#guidelines-panel summary")
    assert "Ads are SPAM" in page.locator("#guidelines-body").inner_text()


def test_bulk_label_from_a_search_then_undo(project, admin_user, login, shots):
    for i in range(5):
        text = f"free prize {i}" if i < 3 else f"see you {i}"
        Example.objects.create(project=project, external_id=f"p{i}", text=text, split="pool")
    page = login(admin_user)
    page.goto(reverse("datasets:examples", args=[project.pk]) + "?search=prize")
    page.click("#bulk-link")
    page.check("input[name=bulk_kind][value=label]")
    page.select_option("select[name=bulk_label]", "1")
    shots(page, "bulk-choose")
    page.click("#bulk-form button[type=submit]")
    assert page.locator("#bulk-count").inner_text() == "3 examples"
    shots(page, "bulk-confirm")
    page.once("dialog", lambda dialog: dialog.accept())  # data-confirm
    page.click("#bulk-confirm button[type=submit]")
    page.wait_for_selector("#bulk-history")
    assert Example.objects.filter(gold_label=1).count() == 3
    shots(page, "bulk-history")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-history button")
    page.wait_for_selector("text=3 examples restored")
    assert not Example.objects.filter(gold_label__isnull=False).exists()


def test_delete_a_project_by_typing_its_name(project, admin_user, login, shots):
    from apps.projects.models import Project

    Example.objects.create(project=project, external_id="x", text="t", split="pool")
    page = login(admin_user)
    page.goto(reverse("projects:settings", args=[project.pk]))
    page.click("#delete-link")
    shots(page, "delete")
    page.fill("#confirm-name", "spam")
    page.click("#delete-form button[type=submit]")
    assert "exactly" in page.locator("#delete-error").inner_text()
    page.fill("#confirm-name", "Spam")
    page.click("#delete-form button[type=submit]")
    page.wait_for_url(re.compile(r"/projects/$"))
    assert "deleted" in page.content()
    assert not Project.objects.filter(pk=project.pk).exists()
