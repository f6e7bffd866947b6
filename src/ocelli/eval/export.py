"""`ocelli eval export-task`: a task's samples as a dataset other harnesses read, and an
lmms-eval task definition that asks and scores them the way ocelli does.

OUTDIR/
  data/test-00000-of-00001.parquet   id, image (bytes, decoded by `datasets`), prompt,
                                     truth and meta (JSON text), candidates
  <task>.yaml, utils.py              the lmms-eval task; utils.py scores with ocelli's
                                     own extraction, so ocelli must be importable there
  export.json                        what was exported, from where, by which ocelli

`datasets.load_dataset("OUTDIR")` gives a "test" split. lmms-eval's per-sample metric is
the mean of ocelli's per-sample score (accuracy); task-level metrics (POPE F1, MME
score, CircularEval) come from `ocelli eval`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError
from ocelli.eval.runner import prepare
from ocelli.eval.tasks import Sample, Task, resolve_tasks
from ocelli.utils import atomic_write_json, atomic_write_text, provenance

PARQUET_NAME = "data/test-00000-of-00001.parquet"
UTILS_FUNCTIONS = ("doc_to_visual", "doc_to_text", "process_results")

UTILS_TEMPLATE = '''"""lmms-eval hooks for ocelli's {name!r} task (written by `ocelli eval export-task`).

Answers are read and scored by ocelli's own task definition, so both harnesses agree.
"""

import json

from ocelli.eval.tasks import Sample, resolve_tasks

TASK = resolve_tasks({name!r})[0]


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]


def _sample(doc):
    return Sample(doc["id"], [], doc["prompt"], json.loads(doc["truth"]), json.loads(doc["meta"]))


def process_results(doc, results):
    sample = _sample(doc)
    answer = TASK.extract(results[0], sample)
    return {{"score": TASK.score(answer, sample)}}
'''

YAML_TEMPLATE = """# lmms-eval task for ocelli's {name!r} (written by `ocelli eval export-task`)
task: ocelli_{name}
dataset_path: {dataset_path}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: truth
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: score
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
  ocelli_task: {name}
"""


def export_task(name: str, data_dir: str | Path | None, out_dir: str | Path) -> dict[str, Any]:
    """Write `name`'s samples from `data_dir` and its lmms-eval definition into `out_dir`."""
    import datasets

    (task,) = resolve_tasks(name)
    (run,) = prepare([task], data_dir, None)
    _check_exportable(task, run.samples)
    out_dir = Path(out_dir).resolve()
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} is not empty; choose a new --out for the export")
    rows = [
        {
            "id": sample.id,
            "image": {
                "bytes": Path(sample.images[0]).read_bytes(),
                "path": Path(sample.images[0]).name,
            },
            "prompt": sample.prompt,
            "truth": json.dumps(sample.truth, ensure_ascii=False),
            "meta": json.dumps(sample.meta, ensure_ascii=False),
            "candidates": task.candidates(sample) if task.candidates else None,
        }
        for sample in run.samples
    ]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "prompt": datasets.Value("string"),
            "truth": datasets.Value("string"),
            "meta": datasets.Value("string"),
            "candidates": datasets.Sequence(datasets.Value("string")),
        }
    )
    parquet = out_dir / PARQUET_NAME
    parquet.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(parquet))
    atomic_write_text(out_dir / "utils.py", UTILS_TEMPLATE.format(name=task.name))
    atomic_write_text(
        out_dir / f"{task.name}.yaml",
        YAML_TEMPLATE.format(
            name=task.name,
            dataset_path=json.dumps(str(out_dir)),
            max_new_tokens=task.max_new_tokens,
        ),
    )
    summary = {
        "task": task.describe(),
        "data": str(data_dir),
        "num_samples": len(rows),
        "files": [PARQUET_NAME, f"{task.name}.yaml", "utils.py"],
        "provenance": provenance(),
    }
    atomic_write_json(out_dir / "export.json", summary)
    return summary


def _check_exportable(task: Task, samples: list[Sample]) -> None:
    """lmms-eval averages a per-sample score and sends one image per sample."""
    first = samples[0]
    if task.score(task.extract("", first), first) is None:
        raise ConfigError(
            f"task {task.name!r} is scored over the whole corpus (no per-sample score); "
            "export-task writes tasks scored per sample"
        )
    several = [s.id for s in samples if len(s.images) != 1]
    if several:
        raise ConfigError(
            f"task {task.name!r}: sample {several[0]} has not one image; "
            "export-task writes tasks with exactly one image per sample"
        )
