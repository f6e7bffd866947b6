"""Stage pieces: dense scene targets, the stage 0 objectives, recipes, parameter groups."""

import pytest
import torch

from ocelli.errors import ConfigError, DataError
from ocelli.train.pretrain_text import PackedTextDataset, collate_blocks
from ocelli.train.pretrain_vision import (
    NOTHING,
    SceneTargets,
    VisionPretrainConfig,
    VisionPretrainModel,
)
from ocelli.train.recipe import STAGES, available_recipes, load_recipe
from ocelli.train.stages import param_groups

TARGETS = SceneTargets(["circle", "square"], ["red", "blue"], ["small", "large"])


def _scene(*objects):
    return {
        "width": 64,
        "height": 64,
        "objects": [{"shape": s, "color": c, "size": z, "bbox": list(b)} for s, c, z, b in objects],
    }


def test_scene_targets_mark_the_cell_of_each_object_centre():
    scene = _scene(
        ("square", "blue", "large", (0, 0, 16, 16)), ("circle", "red", "small", (48, 40, 56, 48))
    )
    targets = TARGETS(scene, grid=8)
    assert targets["color"][1 * 8 + 1] == 2 and targets["shape"][1 * 8 + 1] == 2  # blue square
    assert targets["color"][5 * 8 + 6] == 1 and targets["size"][5 * 8 + 6] == 1  # small red circle
    assert int((targets["color"] != NOTHING).sum()) == 2


def test_two_centres_in_one_cell_go_to_the_larger_object():
    scene = _scene(
        ("circle", "red", "small", (1, 1, 5, 5)), ("square", "blue", "large", (0, 0, 7, 7))
    )
    targets = TARGETS(scene, grid=8)
    assert targets["shape"][0] == 2 and int((targets["color"] != NOTHING).sum()) == 1


class GridEncoder(torch.nn.Module):
    """A stand-in vision adapter: a conv producing a 4x4 grid of 16-dim tokens."""

    hidden_size = 16

    def __init__(self):
        super().__init__()
        self.model = torch.nn.Conv2d(3, 16, kernel_size=4, stride=4)

    def features(self, pixels):
        return self.model(pixels).flatten(2).transpose(1, 2)


def _batch(size=4):
    generator = torch.Generator().manual_seed(0)
    batch = {
        "pixel_values": torch.randn(size, 3, 16, 16, generator=generator),
        "caption_ids": torch.randint(0, 20, (size, 6), generator=generator),
        "caption_mask": torch.ones(size, 6, dtype=torch.long),
    }
    for name, classes in TARGETS.num_classes.items():
        target = torch.zeros(size, 16, dtype=torch.long)
        target[:, 3] = torch.randint(1, classes, (size,), generator=generator)
        batch[name] = target
    return batch


@pytest.mark.parametrize("contrastive, dense", [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0)])
def test_vision_objectives_give_a_finite_loss_that_trains(contrastive, dense):
    torch.manual_seed(0)
    config = VisionPretrainConfig(
        contrastive_weight=contrastive, dense_weight=dense, text_hidden_size=32, embed_dim=16
    )
    model = VisionPretrainModel(GridEncoder(), 20, TARGETS.num_classes, config)
    batch = _batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(**batch)["loss"]
    for _ in range(30):
        loss = model(**batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(first) and loss.item() < first.item()


def test_dense_loss_weights_object_cells_like_all_empty_cells_together():
    config = VisionPretrainConfig(contrastive_weight=0.0, dense_weight=1.0)
    model = VisionPretrainModel(GridEncoder(), 20, TARGETS.num_classes, config)
    batch = _batch()
    tokens = model.encoder.features(batch["pixel_values"])
    # predicting "nothing" perfectly everywhere still leaves half the weight unmet
    for head in model.heads.values():
        torch.nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(torch.tensor([50.0] + [0.0] * (head.out_features - 1)))
    assert model.dense_loss(tokens, batch).item() > 10
    accuracy = model.dense_accuracy(
        batch["pixel_values"], **{k: batch[k] for k in TARGETS.num_classes}
    )
    assert accuracy == {"color": 0.0, "shape": 0.0, "size": 0.0}


class WordTokenizer:
    eos_token_id = 0

    def __call__(self, lines, add_special_tokens=False):
        return {"input_ids": [[len(word) for word in line.split()] for line in lines]}


def test_packed_text_blocks_are_full_and_separated_by_eos(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a bb ccc\n\ndddd e\n")
    dataset = PackedTextDataset(corpus, WordTokenizer(), block_size=3)
    assert len(dataset) == 2 and dataset[0]["input_ids"].tolist() == [1, 2, 3]
    batch = collate_blocks([dataset[0], dataset[1]])
    assert batch["labels"].tolist() == batch["input_ids"].tolist() == [[1, 2, 3], [0, 4, 1]]
    with pytest.raises(DataError, match="fewer than 100 tokens"):
        PackedTextDataset(corpus, WordTokenizer(), block_size=100)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        PackedTextDataset(empty, WordTokenizer())


def test_shipped_recipes_load_and_bad_ones_are_named():
    assert {"quickstart", "base", "sort-of-clevr"} <= set(available_recipes())
    for name in available_recipes():
        assert load_recipe(name).name == name
    recipe = load_recipe("quickstart", ["instruct.train.lr=3e-4", "model.connector=linear"])
    assert recipe.instruct.train.lr == pytest.approx(3e-4) and recipe.model.connector == "linear"
    with pytest.raises(ConfigError, match="registered recipes: .*quickstart"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) lrr"):
        load_recipe("quickstart", ["instruct.train.lrr=1"])
    assert STAGES == ("vision", "text", "align", "perceive", "instruct", "dpo")


def test_the_dpo_stage_is_off_by_default_and_on_in_the_quickstart():
    from ocelli.align import KINDS
    from ocelli.train.recipe import Recipe

    assert not Recipe().dpo.enabled
    recipe = load_recipe("quickstart", ["dpo.loss=ipo", "dpo.num_pairs=10", "dpo.sft_weight=0.5"])
    assert recipe.dpo.enabled and set(recipe.dpo.kinds) <= set(KINDS)
    assert recipe.dpo.sft_weight == 0.5 and Recipe().dpo.sft_weight == 0.0
    assert recipe.dpo.loss == "ipo" and recipe.dpo.num_pairs == 10
    assert 0 < recipe.dpo.train.max_steps <= 100


@pytest.fixture(scope="module")
def tiny_world_run(tmp_path_factory):
    """A run directory holding only a 6-image English training world."""
    from ocelli.world import QUICKSTART_WORLD, generate_dataset

    root = tmp_path_factory.mktemp("dpo-run")
    generate_dataset(
        root / "world" / "train", 6, seed=1, split="train", config=QUICKSTART_WORLD, progress=False
    )
    return root


def test_dpo_stage_pairs_are_a_seeded_sample_of_the_asked_kinds(tiny_world_run):
    from ocelli.align import load_pairs
    from ocelli.train.recipe import Recipe
    from ocelli.train.runners import stage_preference_pairs
    from ocelli.train.stages import RunPaths

    recipe = Recipe()
    recipe.dpo.kinds, recipe.dpo.num_pairs = ["negative", "object"], 5
    paths = RunPaths(tiny_world_run)
    path, summary = stage_preference_pairs(recipe, paths)
    first = path.read_bytes()
    pairs = load_pairs(path)
    assert len(pairs) == summary["num_pairs"] == 5
    assert {pair.kind for pair in pairs} <= {"negative", "object"}
    assert stage_preference_pairs(recipe, paths)[0].read_bytes() == first
    recipe.dpo.kinds = ["objct"]
    with pytest.raises(ConfigError, match="unknown preference kind"):
        stage_preference_pairs(recipe, paths)


def test_dpo_stage_needs_the_stage_2_model(tiny_world_run):
    from ocelli.errors import CheckpointError
    from ocelli.train.recipe import Recipe
    from ocelli.train.runners import run_dpo_stage
    from ocelli.train.stages import RunPaths

    with pytest.raises(CheckpointError, match="stage 2 \\(instruct\\) model"):
        run_dpo_stage(Recipe(), RunPaths(tiny_world_run), None, False, None)


class Parts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    def parameter_groups(self):
        return {"connector": list(self.a.parameters()), "language_model": list(self.b.parameters())}


def test_param_groups_train_named_parts_and_freeze_the_rest():
    from ocelli.train.recipe import StageSection

    model = Parts()
    groups = param_groups(model, StageSection(lr_by_part={"connector": 0.1}), "align")
    assert list(groups) == ["connector"] and groups["connector"][1] == 0.1
    assert all(p.requires_grad for p in model.a.parameters())
    assert not any(p.requires_grad for p in model.b.parameters())
    with pytest.raises(ConfigError, match="unknown part\\(s\\) vison"):
        param_groups(model, StageSection(lr_by_part={"vison": 0.1}), "instruct")
    with pytest.raises(ConfigError, match="empty"):
        param_groups(model, StageSection(lr_by_part={}), "instruct")
