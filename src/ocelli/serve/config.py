"""What an operator sets when serving: address, keys, batching and every limit.

One dataclass, filled from `ocelli serve` flags; the app, the engine and the image
fetcher read their limits from it, so a limit is defined in exactly one place."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ocelli.errors import ConfigError

MIB = 1024 * 1024
# Integer limits, each a `--max-...` flag of `ocelli serve`.
LIMITS = (
    "max_batch_size",
    "max_concurrent_requests",
    "max_concurrent_per_key",
    "max_body_bytes",
    "max_image_bytes",
    "max_image_pixels",
    "max_images_per_request",
    "max_prompt_tokens",
    "max_tokens_limit",
    "max_n",
)


@dataclass
class ServeConfig:
    """Settings of one `ocelli serve` process; defaults suit a laptop CPU and a tiny model."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    # The name /v1/models lists; requests may also say "default" (ocelli eval's default).
    served_model_name: str = "ocelli"
    max_batch_size: int = 8
    # While a batch decodes, newcomers wait up to this many decode steps for others to
    # share their prefill with (0: each is prefilled at the first step it can join).
    admission_wait_steps: int = 4
    # Requests admitted at once (running or queued); past it the server answers 429.
    max_concurrent_requests: int = 64
    max_concurrent_per_key: int = 32
    max_body_bytes: int = 20 * MIB
    max_image_bytes: int = 10 * MIB
    max_image_pixels: int = 20_000_000
    max_images_per_request: int = 8
    # None: the processor's max_length (the model's context).
    max_prompt_tokens: int | None = None
    max_tokens_limit: int = 1024
    max_n: int = 8
    drain_timeout_s: float = 30.0
    allow_image_urls: bool = False
    image_url_hosts: tuple[str, ...] = ()
    image_url_timeout_s: float = 10.0
    image_url_max_redirects: int = 3
    torch_threads: int | None = None
    # Where the web chat is mounted (serve/ui.py); None: no page. The CLI mounts it at /ui.
    ui_path: str | None = None

    def __post_init__(self) -> None:
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None and value < (0 if name == "max_images_per_request" else 1):
                raise ConfigError(
                    f"serve option {name} must be at least 1, got {getattr(self, name)}"
                )
        if self.admission_wait_steps < 0:
            raise ConfigError(
                f"admission_wait_steps must be at least 0, got {self.admission_wait_steps}"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {self.port}")
        if self.allow_image_urls and not self.image_url_hosts:
            raise ConfigError(
                "--allow-image-urls needs at least one --image-url-host: list the hosts images "
                "may be fetched from (e.g. images.example.com or *.example.com)"
            )
        if self.ui_path is not None and not (
            self.ui_path.startswith("/") and len(self.ui_path) > 1
        ):
            raise ConfigError(
                f"the web chat's path must start with '/', like /ui; got {self.ui_path!r}"
            )
        if any(not key for key in self.api_keys):
            raise ConfigError("an API key is empty; give a non-empty --api-key")

    def summary(self) -> dict[str, object]:
        """The settings without secrets, for logs and /health."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_keys"} | {
            "num_api_keys": len(self.api_keys)
        }
