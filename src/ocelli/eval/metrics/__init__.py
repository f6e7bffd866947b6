"""The metrics of the field's evaluation protocols, each a pure function pinned by tests
to reference values: VQAv2 accuracy, CIDEr-D / BLEU-4 / ROUGE-L / METEOR, POPE, MME,
CHAIR, MMBench CircularEval, exact claim scoring, paired bootstrap."""

from ocelli.eval.metrics.bootstrap import paired_bootstrap
from ocelli.eval.metrics.caption import caption_metrics, cider_d
from ocelli.eval.metrics.chair import chair_caption, chair_metrics, object_mentions
from ocelli.eval.metrics.choice import circular_metrics, extract_choice, format_options, rotations
from ocelli.eval.metrics.claims import claim_metrics, extract_claims, score_description
from ocelli.eval.metrics.vqa import normalize_vqa_answer, vqa_accuracy
from ocelli.eval.metrics.yes_no import binary_metrics, mme_metrics, mme_parse, pope_parse

__all__ = [
    "binary_metrics",
    "caption_metrics",
    "chair_caption",
    "chair_metrics",
    "cider_d",
    "circular_metrics",
    "claim_metrics",
    "extract_choice",
    "extract_claims",
    "format_options",
    "mme_metrics",
    "mme_parse",
    "normalize_vqa_answer",
    "object_mentions",
    "paired_bootstrap",
    "pope_parse",
    "rotations",
    "score_description",
    "vqa_accuracy",
]
