"""Token prices and cost estimates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per 1,000 tokens."""

    input_per_1k: float
    output_per_1k: float


# From the Model Studio deep-research page (Beijing region). The snapshot's price is not
# published, so it shows tokens only.
DEFAULT_PRICES: Final[Mapping[str, Price]] = MappingProxyType(
    {"qwen-deep-research": Price(input_per_1k=0.007742, output_per_1k=0.023367)}
)


@dataclass(frozen=True, slots=True)
class Pricing:
    prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """Estimated cost in US dollars, or None when the model has no known price."""
        price = self.prices.get(model)
        if price is None:
            return None
        return (input_tokens * price.input_per_1k + output_tokens * price.output_per_1k) / 1000
