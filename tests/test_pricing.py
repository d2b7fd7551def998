"""The operator's price table (PRICING_FILE) and the settings that go with answers and budgets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.usage import DEFAULT_PRICES, Price, PricingError, load_pricing

BASE_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_APP_TOKEN": "xapp-1",
    "DASHSCOPE_API_KEY": "sk-1",
}


def test_json_overrides_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        '{"qwen-plus": {"input_per_1k": 0.0008, "output_per_1k": 0.002,'
        ' "thinking_output_per_1k": 0.008},'
        ' "qwen-deep-research": {"input_per_1k": 1, "output_per_1k": 2}}'
    )
    pricing = load_pricing(path)
    assert pricing.prices["qwen-plus"] == Price(0.0008, 0.002, 0.008)
    assert pricing.prices["qwen-deep-research"] == Price(1.0, 2.0)
    assert pricing.cost("qwen-plus", 1000, 1000) == Decimal("0.0028")
    assert pricing.cost("qwen-plus", 1000, 1000, thinking=True) == Decimal("0.0088")
    assert pricing.cost("qwq-plus", 1000, 1000) is None


def test_toml_with_quoted_and_bare_model_names(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '["qwen3-max"]\ninput_per_1k = 0.0012\noutput_per_1k = 0.006\n\n'
        "[qwq-plus]\ninput_per_1k = 0.0008\noutput_per_1k = 0.0024\n"
    )
    pricing = load_pricing(path)
    assert pricing.prices["qwq-plus"] == Price(0.0008, 0.0024)
    assert pricing.prices["qwen3-max"] == Price(0.0012, 0.006)
    # The seeded price stays unless the file overrides it.
    assert pricing.prices["qwen-deep-research"] == DEFAULT_PRICES["qwen-deep-research"]


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("p.json", "{not json", "is not valid json"),
        ("p.toml", "[x\n", "is not valid toml"),
        ("p.yaml", "a: 1", "must end in .json or .toml"),
        ("p.json", "[1, 2]", "must map model names to prices"),
        ("p.json", '{"m": 3}', "expected a table"),
        ("p.json", '{"m": {"input_per_1k": 1}}', "missing output_per_1k"),
        ("p.json", '{"m": {"input_per_1k": -1, "output_per_1k": 1}}', "must not be negative"),
        ("p.json", '{"m": {"input_per_1k": "1", "output_per_1k": 1}}', "must be a number"),
        ("p.json", '{"m": {"input_per_1k": 1, "output_per_1k": 1, "cached": 1}}', "unknown key"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, name: str, content: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PricingError, match=says) as caught:
        load_pricing(path)
    assert str(path) in str(caught.value)


def test_settings_read_the_new_variables(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"qwen-plus": {"input_per_1k": 0.0008, "output_per_1k": 0.002}}')
    settings = load_settings(
        {
            **BASE_ENV,
            "THINKING_BUDGET": "4000",
            "WORKSPACE_MONTHLY_TOKEN_BUDGET": "5_000_000",
            "PRICING_FILE": str(prices),
        },
        dotenv=None,
    )
    assert settings.thinking_budget == 4000
    assert settings.workspace_monthly_token_budget == 5_000_000
    assert settings.pricing.cost("qwen-plus", 1000, 0) == Decimal("0.0008")
    assert "5000000" in repr(settings)


def test_settings_defaults() -> None:
    settings = load_settings(BASE_ENV, dotenv=None)
    assert settings.thinking_budget is None
    assert settings.workspace_monthly_token_budget is None
    assert settings.pricing_file is None
    assert settings.pricing.prices == DEFAULT_PRICES


def test_settings_fail_fast_on_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                **BASE_ENV,
                "THINKING_BUDGET": "lots",
                "WORKSPACE_MONTHLY_TOKEN_BUDGET": "0",
                "PRICING_FILE": str(tmp_path / "missing.json"),
            },
            dotenv=None,
        )
    message = str(caught.value)
    assert "THINKING_BUDGET must be a positive whole number" in message
    assert "WORKSPACE_MONTHLY_TOKEN_BUDGET must be a positive whole number" in message
    assert "missing.json cannot be read" in message
