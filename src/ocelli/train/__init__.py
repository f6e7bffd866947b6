"""Training: the generic loop on accelerate, its config, checkpoints and reports."""

from ocelli.train.loop import TrainResult, train
from ocelli.train.plots import plot_loss_curves
from ocelli.train.trainer_config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "plot_loss_curves", "train"]
