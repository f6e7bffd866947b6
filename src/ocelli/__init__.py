"""ocelli: build, train, evaluate and serve multimodal large language models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
