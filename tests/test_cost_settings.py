"""The cost settings (issue 20, part 1): the price table's defaults and overrides, and bad values
that name their variable at start rather than pricing every image wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest

from generation.cloud_prices import DEFAULT_CLOUD_PRICES, cloud_price_table
from tests.test_settings import load_settings


def test_the_default_table_is_openais_landscape_prices_and_entries_override_or_add() -> None:
    assert cloud_price_table("") == DEFAULT_CLOUD_PRICES
    assert DEFAULT_CLOUD_PRICES["gpt-image-1"] == Decimal("0.063")
    assert DEFAULT_CLOUD_PRICES["dall-e-3"] == Decimal("0.080")
    table = cloud_price_table(" gpt-image-1 = 0.042 , my-proxy=0.01,")
    assert table["gpt-image-1"] == Decimal("0.042") and table["my-proxy"] == Decimal("0.01")
    assert table["dall-e-3"] == DEFAULT_CLOUD_PRICES["dall-e-3"]


@pytest.mark.parametrize(
    ("text", "says"),
    [("gpt-image-1", "is not model=price"), ("gpt-image-1=cheap", "is not a number"), ("x=-1", "at least 0")],
)
def test_a_malformed_price_entry_is_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        cloud_price_table(text)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HOFFDESK_CLOUD_PRICES": "gpt-image-1=free"}, "HOFFDESK_CLOUD_PRICES"),
        ({"HOFFDESK_ELECTRICITY_PRICE": "-0.3"}, "HOFFDESK_ELECTRICITY_PRICE"),
        ({"HOFFDESK_GPU_WATTS": "lots"}, "HOFFDESK_GPU_WATTS"),
        ({"HOFFDESK_ENERGY_READER": "nvml please"}, "HOFFDESK_ENERGY_READER"),
    ],
)
def test_a_bad_cost_setting_names_its_variable(tmp_path, env, named) -> None:
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr
