"""ocelli.align: preference data from the world's ground truth, DPO/IPO against a frozen
reference, a Bradley-Terry reward model, RL (GRPO/RLOO) against the world's verifiable
reward or a learned one, with a KL penalty to the SFT model, and further supervised
tuning (LRV-augmented instructions). Decoding-time mitigation (VCD) lives in
ocelli.generate.logits. See docs/alignment.md.

    from ocelli.align import write_preference_data, train_dpo, DPOConfig
    write_preference_data("data/world/train", "pairs.jsonl")
    train_dpo("runs/quickstart/instruct/final", "pairs.jsonl", "runs/dpo", DPOConfig(beta=0.1))
    train_rl("runs/quickstart/instruct/final", "data/world/train", "world", "runs/rl")
"""

from ocelli.align.batches import PairCollator, PreferenceDataset, sequence_log_probs
from ocelli.align.dpo import DPOConfig, DPOModel, preference_loss, preference_margins, sft_loss
from ocelli.align.pairs import PreferencePair, load_pairs, write_pairs
from ocelli.align.preference_data import (
    KINDS,
    build_preference_pairs,
    instruction_records,
    lrv_conversations,
    write_preference_data,
)
from ocelli.align.reward import RewardModel, pair_accuracy
from ocelli.align.rewards import LearnedReward, Reward, RLPrompt, WorldReward, world_prompts
from ocelli.align.rl import RLConfig, RLModel, group_advantages, policy_loss
from ocelli.align.sampled import sampled_pairs
from ocelli.align.training import train_dpo, train_reward, train_rl, train_sft

__all__ = [
    "KINDS",
    "DPOConfig",
    "DPOModel",
    "LearnedReward",
    "PairCollator",
    "PreferenceDataset",
    "PreferencePair",
    "RLConfig",
    "RLModel",
    "RLPrompt",
    "Reward",
    "RewardModel",
    "WorldReward",
    "build_preference_pairs",
    "group_advantages",
    "instruction_records",
    "load_pairs",
    "lrv_conversations",
    "pair_accuracy",
    "policy_loss",
    "preference_loss",
    "preference_margins",
    "sampled_pairs",
    "sequence_log_probs",
    "sft_loss",
    "train_dpo",
    "train_reward",
    "train_rl",
    "train_sft",
    "world_prompts",
    "write_pairs",
    "write_preference_data",
]
