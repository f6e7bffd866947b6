"""ocelli.align: preference data from the world's ground truth, DPO/IPO against a frozen
reference, a Bradley-Terry reward model. Decoding-time mitigation (VCD) lives in
ocelli.generate.logits. See docs/alignment.md.

    from ocelli.align import write_preference_data, train_dpo, DPOConfig
    write_preference_data("data/world/train", "pairs.jsonl")
    train_dpo("runs/quickstart/instruct/final", "pairs.jsonl", "runs/dpo", DPOConfig(beta=0.1))
"""

from ocelli.align.batches import PairCollator, PreferenceDataset, sequence_log_probs
from ocelli.align.dpo import DPOConfig, DPOModel, preference_loss, preference_margins
from ocelli.align.pairs import PreferencePair, load_pairs, write_pairs
from ocelli.align.preference_data import (
    KINDS,
    build_preference_pairs,
    instruction_records,
    write_preference_data,
)
from ocelli.align.reward import RewardModel, pair_accuracy
from ocelli.align.sampled import sampled_pairs
from ocelli.align.training import train_dpo, train_reward

__all__ = [
    "KINDS",
    "DPOConfig",
    "DPOModel",
    "PairCollator",
    "PreferenceDataset",
    "PreferencePair",
    "RewardModel",
    "build_preference_pairs",
    "instruction_records",
    "load_pairs",
    "pair_accuracy",
    "preference_loss",
    "preference_margins",
    "sampled_pairs",
    "sequence_log_probs",
    "train_dpo",
    "train_reward",
    "write_pairs",
    "write_preference_data",
]
