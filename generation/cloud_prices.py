"""The cloud price table: what one image costs from a cloud image API, per model.

One table for the whole project: the Costs page compares local images with it, and the cloud
engine charges its budget from it. Plain data, no Django, so settings can parse it at start.

Defaults are OpenAI's published per-image prices in US dollars for a landscape image (the
hero's shape: 1536x1024 for the GPT Image models, 1792x1024 for DALL-E 3) at the quality our
cloud engine asks for ("medium" / "standard"), as published when this was written (checked
2026-12-05: gpt-image-1 and gpt-image-1-mini from OpenAI's model pages; dall-e-3 and dall-e-2
from openai.com/pricing as of 2023-12-25; OpenAI has since retired DALL-E 3 from its API, the
price stays for old runs). Prices change: ``HOFFDESK_CLOUD_PRICES`` overrides or adds entries
(``model=price``, comma-separated), in ``HOFFDESK_CURRENCY``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

DEFAULT_CLOUD_PRICES: dict[str, Decimal] = {
    "gpt-image-1": Decimal("0.063"),  # medium, 1536x1024 (1024x1024: 0.042; high 1536x1024: 0.25)
    "gpt-image-1-mini": Decimal("0.015"),  # medium, 1536x1024 (high: 0.052)
    "dall-e-3": Decimal("0.080"),  # standard, 1792x1024 (1024x1024: 0.040; hd 1792x1024: 0.120)
    "dall-e-2": Decimal("0.020"),  # 1024x1024, its largest (square only)
}

# The model the Costs page compares with when no cloud engine is configured.
DEFAULT_COMPARISON_MODEL = "gpt-image-1"


def cloud_price_table(text: str) -> dict[str, Decimal]:
    """The default table with ``model=price`` entries (comma-separated) laid over it.

    ``ValueError`` names a malformed entry or a price that is not a non-negative number, so a
    typo fails at start rather than pricing every image wrong.
    """
    table = dict(DEFAULT_CLOUD_PRICES)
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        model, sep, raw = (part.strip() for part in entry.partition("="))
        if not sep or not model:
            raise ValueError(f"{entry!r} is not model=price (e.g. gpt-image-1=0.063)")
        try:
            price = Decimal(raw)
        except InvalidOperation:
            raise ValueError(f"{model}: the price {raw!r} is not a number") from None
        if not price.is_finite() or price < 0:
            raise ValueError(f"{model}: the price {raw!r} must be a number of at least 0")
        table[model] = price
    return table


def cloud_price(table: dict[str, Decimal], model: str) -> Decimal | None:
    """The price of one image from ``model``; None when the table does not know it."""
    return table.get(model)
