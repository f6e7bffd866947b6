"""Registries that turn a name from a recipe into a piece of a model.

- `CONNECTORS`: connector name ("linear", "mlp") -> connector class.
- `VISION_ENCODERS`: preset name ("clip-tiny") -> function returning a vision config.
- `LANGUAGE_MODELS`: preset name ("llama-tiny") -> function returning a causal-LM config.
- `VISION_ADAPTERS`: Hugging Face `model_type` ("clip_vision_model", "convnext") -> the
  adapter class that wraps that kind of vision model and selects its features.

Each has a decorator (`register_connector("name")` and so on); adding a connector is one
new file in `connectors/` with that decorator on its class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ocelli.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table whose lookups fail with the list of known names."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint  # appended to unknown-name errors: what else the caller may pass
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering its target under one or more names."""

        def decorator(entry: T) -> T:
            for name in names:
                known = self._entries.get(name)
                if known is not None and known is not entry:
                    raise RegistryError(
                        f"{self.kind} {name!r} is already registered ({_describe(known)}); "
                        "pick another name"
                    )
                self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            hint = f" {self.hint}" if self.hint else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                f"{', '.join(self.names()) or '(none)'}.{hint}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _describe(entry: Any) -> str:
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"


CONNECTORS: Registry[Any] = Registry("connector")
VISION_ENCODERS: Registry[Callable[..., Any]] = Registry(
    "vision encoder",
    "Or pass a vision config (dict or PretrainedConfig) or a local checkpoint directory.",
)
LANGUAGE_MODELS: Registry[Callable[..., Any]] = Registry(
    "language model",
    "Or pass a causal-LM config (dict or PretrainedConfig) or a local checkpoint directory.",
)
VISION_ADAPTERS: Registry[Any] = Registry("vision model type")


def register_connector(name: str) -> Callable[[T], T]:
    return CONNECTORS.register(name)


def register_vision_encoder(name: str) -> Callable[[T], T]:
    return VISION_ENCODERS.register(name)


def register_language_model(name: str) -> Callable[[T], T]:
    return LANGUAGE_MODELS.register(name)


def register_vision_adapter(*model_types: str) -> Callable[[T], T]:
    return VISION_ADAPTERS.register(*model_types)
