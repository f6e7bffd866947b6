"""The Perceiver resampler of Flamingo / IDEFICS: `num_latents` learned latents; in each
layer they attend to the image features and to themselves at once (keys and values are
[features; latents]), then a feed-forward. Flamingo's per-frame time embeddings are left
out: ocelli feeds still images.
"""

from __future__ import annotations

from ocelli.model.connectors.resampler import ResamplerConnector
from ocelli.model.registry import register_connector


@register_connector("perceiver")
class PerceiverConnector(ResamplerConnector):
    # hidden_size None = the LM's width
    default_options = {"num_latents": 64, "num_layers": 2, "num_heads": 4, "hidden_size": None}
    count_option = "num_latents"
    self_attention = False
    attend_to_queries = True
