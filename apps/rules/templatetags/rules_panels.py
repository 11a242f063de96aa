"""Regions the rules app adds to other apps' pages, so those apps need not import it."""

from django import template

from apps.rules.selectors import rules_for_example

register = template.Library()


@register.inclusion_tag("rules/_fired_on_example.html")
def rules_fired_on(project, example) -> dict:
    """The "Rules that fired" card of an example's page: the project's accepted rules, split
    into those that match the example, those that do not, and those not evaluated here."""
    rules = rules_for_example(project=project, example=example)
    return {
        "project": project,
        "fired_rules": [rule for rule in rules if rule.fired],
        "quiet_rules": [rule for rule in rules if rule.fired is False],
        "unevaluated_rules": [rule for rule in rules if rule.fired is None],
    }
