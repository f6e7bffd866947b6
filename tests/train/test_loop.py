import json

import pytest
import torch
from tiny_training import TinyRegression, collate, make_model, train_tiny, weights

from ocelli.errors import ConfigError
from ocelli.train import TrainConfig, plot_loss_curves, train
from ocelli.train.loop import StepSampler
from ocelli.train.progress import ProgressDisplay, read_metrics
from ocelli.train.trainer_config import lr_multiplier


def test_metrics_jsonl_final_model_and_result(tmp_path):
    model, result = train_tiny(tmp_path, max_steps=8, log_every=2, warmup_steps=2)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    for record in records:
        assert {
            "step",
            "epoch",
            "loss",
            "lr",
            "grad_norm",
            "samples_per_s",
            "tokens_per_s",
            "elapsed",
        } <= set(record)
        assert record["lr"] == pytest.approx(
            1e-2 * lr_multiplier(record["step"] - 1, 8, 2, "cosine", 0.1)
        )
    assert records[-1]["elapsed"] >= records[0]["elapsed"]
    assert result.steps == 8 and result.start_step == 0
    assert result.metrics == records[-1]
    assert result.samples_per_s > 0 and result.wall_time_s > 0
    assert result.final_dir == tmp_path / "final"
    assert (tmp_path / "final" / "model.safetensors").is_file()
    state = json.loads((tmp_path / "final" / "trainer_state.json").read_text())
    assert state["step"] == 8 and state["samples_seen"] == 32 and state["config"]["max_steps"] == 8
    assert "git_commit" in state["provenance"]
    json.dumps(result.summary())


def test_training_lowers_the_loss(tmp_path):
    _, result = train_tiny(tmp_path, max_steps=60, log_every=10, schedule="constant")
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    runs = {}
    for batch_size, accum in [(4, 1), (2, 2), (1, 4)]:
        out = tmp_path / f"b{batch_size}"
        model, _ = train_tiny(out, batch_size=batch_size, grad_accum_steps=accum, max_steps=5)
        runs[(batch_size, accum)] = (
            weights(model),
            [r["loss"] for r in read_metrics(out / "metrics.jsonl")],
        )
    reference_weights, reference_losses = runs[(4, 1)]
    for key, (other_weights, losses) in runs.items():
        # to float32 precision: one unit in the last place of a loss near 16 is 1.9e-6
        assert losses == pytest.approx(reference_losses, rel=2e-7, abs=1e-6), key
        for name, tensor in reference_weights.items():
            torch.testing.assert_close(other_weights[name], tensor, atol=1e-6, rtol=0, msg=str(key))


def test_gradients_are_clipped_before_the_optimizer_step(tmp_path, monkeypatch):
    seen = []
    original = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        seen.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    train_tiny(tmp_path / "clipped", max_grad_norm=0.05, max_steps=4)
    logged = [r["grad_norm"] for r in read_metrics(tmp_path / "clipped" / "metrics.jsonl")]
    assert len(seen) == 4
    assert max(seen) == pytest.approx(0.05, rel=1e-4)
    assert min(logged) > 0.05  # the log keeps the norm before clipping
    seen.clear()
    train_tiny(tmp_path / "unclipped", max_grad_norm=None, max_steps=4)
    unclipped = [r["grad_norm"] for r in read_metrics(tmp_path / "unclipped" / "metrics.jsonl")]
    assert seen == pytest.approx(unclipped, rel=1e-5)


def test_bf16_autocasts_the_forward_and_keeps_fp32_weights(tmp_path):
    model = make_model()
    dtypes = []
    model.net[0].register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    _, result = train_tiny(tmp_path, model=model, mixed_precision="bf16", max_steps=3)
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(torch.tensor(result.final_loss))


def test_named_parameter_groups_have_their_own_rates(tmp_path):
    model = make_model()
    for param in model.net[3].parameters():
        param.requires_grad_(False)
    frozen_before = weights(model)["net.3.weight"]
    groups = {"first": (list(model.net[0].parameters()), 1e-2)}
    config = TrainConfig(max_steps=3, batch_size=4, log_every=1, tensorboard=False)
    train(model, TinyRegression(), collate, config, tmp_path / "one", param_groups=groups)
    assert torch.equal(weights(model)["net.3.weight"], frozen_before)

    model = make_model()
    groups = {
        "first": (list(model.net[0].parameters()), 1e-2),
        "last": (list(model.net[3].parameters()), 1e-3),
    }
    train(model, TinyRegression(), collate, config, tmp_path / "two", param_groups=groups)
    record = read_metrics(tmp_path / "two" / "metrics.jsonl")[0]
    assert record["lr/first"] == pytest.approx(1e-2 * lr_multiplier(0, 3, 0, "cosine", 0.1))
    assert record["lr/last"] == pytest.approx(1e-3 * lr_multiplier(0, 3, 0, "cosine", 0.1))


def test_frozen_parameters_in_a_group_are_a_config_error(tmp_path):
    model = make_model()
    model.net[0].weight.requires_grad_(False)
    config = TrainConfig(max_steps=1, batch_size=4)
    with pytest.raises(ConfigError, match="'first'.*frozen"):
        train(
            model,
            TinyRegression(),
            collate,
            config,
            tmp_path,
            param_groups={"first": (list(model.net[0].parameters()), 1e-2)},
        )


def test_model_without_loss_is_a_clear_type_error(tmp_path):
    class NoLoss(torch.nn.Linear):
        def forward(self, inputs, targets):
            return {"logits": super().forward(inputs)}

    with pytest.raises(TypeError, match="without a tensor `loss`"):
        train(NoLoss(8, 1), TinyRegression(), collate, TrainConfig(max_steps=1), tmp_path)


def test_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    train_tiny(tmp_path, max_steps=6, log_every=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tiny]")]
    assert len(lines) == 3
    assert lines[-1].startswith("[tiny] step 6/6 | loss ")
    for field in ("lr ", "samples/s", "tok/s", "eta "):
        assert field in lines[-1]


def test_rich_bar_on_a_terminal_writes_no_plain_lines(tmp_path):
    import io

    stream = io.StringIO()
    display = ProgressDisplay(
        "tiny", total_steps=4, start_step=0, log_every=1, plain=False, stream=stream
    )
    for step in range(1, 5):
        display.update(step, {"loss": 1.0, "lr": 1e-3, "samples_per_s": 10.0, "tokens_per_s": 5.0})
    display.close()
    assert "step 4/4" not in stream.getvalue()
    assert "4/4" in stream.getvalue()


def test_data_order_depends_only_on_the_global_batch():
    def step_samples(num_processes, accum, batch_size, steps=6):
        per_step = [set() for _ in range(steps)]
        for rank in range(num_processes):
            sampler = iter(StepSampler(50, batch_size, accum, num_processes, rank, seed=3))
            for step in range(steps):
                for _ in range(accum):
                    per_step[step].update(next(sampler))
        return per_step

    reference = step_samples(1, 1, 8)
    assert all(len(s) == 8 for s in reference)
    assert step_samples(2, 1, 4) == reference
    assert step_samples(2, 2, 2) == reference
    assert step_samples(1, 4, 2) == reference
    # six steps of 8 cover the first epoch (6 full batches of 50) once, without repeats
    assert len(set().union(*reference)) == 48
    resumed = iter(StepSampler(50, 8, 1, 1, 0, seed=3, start_step=4))
    assert set(next(resumed)) == reference[4]


def test_loss_plot_is_written(tmp_path):
    train_tiny(tmp_path / "a", max_steps=4)
    train_tiny(tmp_path / "b", max_steps=4, lr=1e-3)
    out = plot_loss_curves(
        {"lr 1e-2": tmp_path / "a" / "metrics.jsonl", "lr 1e-3": tmp_path / "b" / "metrics.jsonl"},
        tmp_path / "loss.png",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000


def test_loader_workers_keep_the_data_order(tmp_path):
    _, in_process = train_tiny(tmp_path / "w0", max_steps=4)
    _, with_workers = train_tiny(tmp_path / "w2", max_steps=4, num_workers=2)
    assert read_metrics(tmp_path / "w2" / "metrics.jsonl") != []
    assert [r["loss"] for r in read_metrics(tmp_path / "w2" / "metrics.jsonl")] == [
        r["loss"] for r in read_metrics(tmp_path / "w0" / "metrics.jsonl")
    ]
    assert with_workers.final_loss == in_process.final_loss


def test_tensorboard_events_when_it_is_installed(tmp_path):
    pytest.importorskip("tensorboard")
    train_tiny(tmp_path, max_steps=2, tensorboard=True)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
