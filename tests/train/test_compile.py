"""train.compile: the LM's decoder layers compiled in place, the same step as eager."""

import pytest
import torch

from ocelli.data import PadCollator
from ocelli.errors import ConfigError
from ocelli.train import TrainConfig, train
from ocelli.train.compile import compile_language_model_layers
from tests.data.test_packing import samples
from tests.model.tiny import PAD_TOKEN_ID, make_model
from tests.train.tiny_training import TinyModel, TinyRegression, collate


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_compile_needs_a_language_model_with_decoder_layers(tmp_path):
    with pytest.raises(ConfigError, match="set train.compile: false"):
        compile_language_model_layers(TinyModel())
    config = TrainConfig(max_steps=1, batch_size=4, compile=True, tensorboard=False)
    with pytest.raises(ConfigError, match="has none"):
        train(TinyModel(), TinyRegression(), collate, config, tmp_path)


def test_compile_wraps_each_decoder_layer_without_renaming_weights():
    model = make_model()
    names = list(model.state_dict())
    assert compile_language_model_layers(model) == model.config.text_config.num_hidden_layers
    assert all(layer._compiled_call_impl is not None for layer in model.language_model.model.layers)
    assert list(model.state_dict()) == names  # checkpoints load the same either way


@pytest.mark.slow
def test_compiled_training_takes_the_eager_steps(tmp_path):
    """Packed rows: the compiled layers call out to the eager per-sample attention."""
    losses = {}
    for compiled in (False, True):
        model = make_model()
        seen = losses.setdefault(compiled, [])
        config = TrainConfig(
            max_steps=2, batch_size=4, packing=True, compile=compiled, tensorboard=False
        )
        train(
            model,
            samples(model),
            PadCollator(PAD_TOKEN_ID),
            config,
            tmp_path / str(compiled),
            callbacks=[lambda step, stats, seen=seen: seen.append(stats["loss"])],
        )
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
