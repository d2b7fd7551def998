"""Token prices and cost estimates; the operator's price table (PRICING_FILE)."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per 1,000 tokens."""

    input_per_1k: float
    output_per_1k: float
    # Some hybrid models bill output at a higher rate when they reasoned; None: same rate.
    thinking_output_per_1k: float | None = None


# From the Model Studio deep-research page (Beijing region). The snapshot's price is not
# published, so it shows tokens only.
DEFAULT_PRICES: Final[Mapping[str, Price]] = MappingProxyType(
    {"qwen-deep-research": Price(input_per_1k=0.007742, output_per_1k=0.023367)}
)


@dataclass(frozen=True, slots=True)
class Pricing:
    prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)

    def cost(
        self, model: str, input_tokens: int, output_tokens: int, *, thinking: bool = False
    ) -> Decimal | None:
        """Estimated cost in US dollars (exact: prices are read as the decimals they were
        written as), or None when the model has no known price.

        `thinking`: the call produced reasoning, which is billed as output tokens (at the
        thinking rate where a model has one).
        """
        price = self.prices.get(model)
        if price is None:
            return None
        output_rate = price.output_per_1k
        if thinking and price.thinking_output_per_1k is not None:
            output_rate = price.thinking_output_per_1k
        total = input_tokens * _exact(price.input_per_1k) + output_tokens * _exact(output_rate)
        return total / 1000


def _exact(price: float) -> Decimal:
    # str() gives the shortest decimal that reads back as this float: 0.007742, not 0.00774199…
    return Decimal(str(price))


class PricingError(ValueError):
    """The price file cannot be used; the message names the file and the problem."""


_FIELDS: Final = ("input_per_1k", "output_per_1k", "thinking_output_per_1k")


def load_pricing(path: Path) -> Pricing:
    """The default prices overridden, model by model, by a JSON or TOML file:

    {"qwen-plus": {"input_per_1k": 0.0008, "output_per_1k": 0.002}}

    ["qwen-plus"]
    input_per_1k = 0.0008
    output_per_1k = 0.002
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingError(f"PRICING_FILE {path} cannot be read ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw)
        elif path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            raise PricingError(f"PRICING_FILE {path} must end in .json or .toml")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PricingError(f"PRICING_FILE {path} is not valid {path.suffix[1:]}: {exc}") from None
    if not isinstance(data, dict):
        raise PricingError(f"PRICING_FILE {path} must map model names to prices")
    prices = dict(DEFAULT_PRICES)
    for model, entry in data.items():
        prices[model] = _price(path, model, entry)
    return Pricing(MappingProxyType(prices))


def _price(path: Path, model: str, entry: Any) -> Price:
    where = f"PRICING_FILE {path}, model {model!r}"
    if not isinstance(entry, dict):
        raise PricingError(f"{where}: expected a table with input_per_1k and output_per_1k")
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise PricingError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, float] = {}
    for name in _FIELDS:
        value = entry.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PricingError(f"{where}: {name} must be a number of US dollars per 1K tokens")
        if not math.isfinite(value) or value < 0:
            raise PricingError(f"{where}: {name} must not be negative")
        values[name] = float(value)
    missing = [name for name in _FIELDS[:2] if name not in values]
    if missing:
        raise PricingError(f"{where}: missing {' and '.join(missing)}")
    return Price(**values)
