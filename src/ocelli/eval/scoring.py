"""The two ways a closed-set task is scored: `generate` (greedy generation, then the
task's answer extraction) and `loglik` (the log-likelihood of every candidate answer as
the whole reply, the likeliest one taken as the answer, then the same extraction and
scoring). `both` runs each closed-set task twice; the log-likelihood run is reported as
its own task, `<name>.loglik`, with its own samples file, so either resumes alone.

Log-likelihood ranking asks only samples with a closed candidate set (a world_vqa
reasoning question has none) and needs the model's token probabilities: local models
only, an OpenAI-compatible server is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ocelli.errors import ConfigError
from ocelli.eval.tasks import Sample, Task

SCORING_MODES = ("generate", "loglik", "both")
LOGLIK_SUFFIX = ".loglik"


def with_scoring(tasks: list[Task], mode: str) -> list[Task]:
    """The tasks to run for `mode`: `loglik` replaces every task by its log-likelihood
    variant (refusing tasks without candidates), `both` adds the variant after each
    closed-set task."""
    if mode not in SCORING_MODES:
        raise ConfigError(f"scoring must be one of {', '.join(SCORING_MODES)}, got {mode!r}")
    if mode == "generate":
        return tasks
    open_ended = [task.name for task in tasks if task.candidates is None]
    if mode == "loglik" and open_ended:
        raise ConfigError(
            f"task(s) {', '.join(open_ended)} have no candidate answers to rank; "
            "use --scoring generate or --scoring both"
        )
    chosen = []
    for task in tasks:
        if mode == "both":
            chosen.append(task)
        if task.candidates is not None:
            chosen.append(loglik_variant(task))
    return chosen


def loglik_variant(task: Task) -> Task:
    """`task` scored by ranking its candidates, over the samples that have some."""
    if task.candidates is None:
        raise ConfigError(f"task {task.name!r} has no candidate answers to rank")
    candidates, build = task.candidates, task.build

    def build_closed(data_dir: Path) -> list[Sample]:
        return [sample for sample in build(data_dir) if candidates(sample)]

    return dataclasses.replace(
        task,
        name=task.name + LOGLIK_SUFFIX,
        description=f"{task.description} (log-likelihood ranking of the candidate answers)",
        build=build_closed,
        scoring="loglik",
    )
