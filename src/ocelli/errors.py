"""Exception types raised by ocelli.

Every error a user can cause derives from `OcelliError`; the CLI prints its message
without a traceback and exits non-zero. Messages name the input, what was wrong and
what to do about it.
"""


class OcelliError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(OcelliError, ValueError):
    """A configuration (YAML, CLI override, model config) is invalid."""


class DataError(OcelliError, ValueError):
    """A dataset file, JSON line or conversation is malformed."""


class ImageError(OcelliError, ValueError):
    """An image file is missing, corrupt, too large or of an unsupported kind."""


class CheckpointError(OcelliError, ValueError):
    """A checkpoint directory is missing files or holds another kind of model."""


class PromptError(OcelliError, ValueError):
    """A prompt is empty, too long, or its image placeholders do not match its images."""


class RegistryError(OcelliError, KeyError):
    """A name (connector, encoder, language model, recipe, task) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
