"""Generation: load a trained model directory and ask it about images."""

from ocelli.generate.chat_cli import chat_command
from ocelli.generate.pipeline import OcelliPipeline, load

__all__ = ["OcelliPipeline", "chat_command", "load"]
