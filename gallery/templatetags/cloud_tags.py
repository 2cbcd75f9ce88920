"""``{% cloud_quote as quote %}``: the cloud engine's price for the Make in the cloud button,
or None when the cloud is off (then the button does not exist)."""

from __future__ import annotations

from django import template

from generation.cloud import CloudQuote, cloud_enabled, cloud_quote, money

register = template.Library()

# The counts the button offers; the hero needs one keeper, a few make a choice.
CLOUD_COUNTS = (1, 2, 4)


@register.simple_tag
def cloud_quote_for(count: int = 1) -> CloudQuote | None:
    return cloud_quote(count=count) if cloud_enabled() else None


@register.simple_tag
def cloud_counts() -> tuple[int, ...]:
    return CLOUD_COUNTS


register.filter("money", money)
