"""Generation: load a trained model directory and ask it about images."""

from ocelli.generate.chat_cli import chat_command
from ocelli.generate.expert import ExpertPipeline
from ocelli.generate.logits import VCDConfig, VCDLogitsProcessor, vcd_generate
from ocelli.generate.pipeline import OcelliPipeline, load

__all__ = [
    "ExpertPipeline",
    "OcelliPipeline",
    "VCDConfig",
    "VCDLogitsProcessor",
    "chat_command",
    "load",
    "vcd_generate",
]
