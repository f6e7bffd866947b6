"""BLIP-2's Q-Former, reduced to its bridging role: `num_queries` learned queries, each
layer self-attention among the queries, cross-attention to the image features and a
feed-forward, then a linear map to the LM's width. (BLIP-2's text branch and its
image-text pretraining losses are not included: ocelli trains it through the LM's loss.)
"""

from __future__ import annotations

from ocelli.model.connectors.resampler import ResamplerConnector
from ocelli.model.registry import register_connector


@register_connector("qformer")
class QFormerConnector(ResamplerConnector):
    # hidden_size None = the LM's width
    default_options = {"num_queries": 32, "num_layers": 2, "num_heads": 4, "hidden_size": None}
    count_option = "num_queries"
    self_attention = True
    attend_to_queries = False
