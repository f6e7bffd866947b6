"""Evaluation tasks by name: the built-in world tasks, and tasks from files."""

from __future__ import annotations

from ocelli.errors import ConfigError
from ocelli.eval.tasks import (  # noqa: F401  (registration)
    world_choice,
    world_closed,
    world_text,
    world_vqa_variants,
)
from ocelli.eval.tasks.base import TASKS, Aggregate, Sample, Task, register_task
from ocelli.eval.tasks.user import is_task_file, load_task_file


def resolve_tasks(spec: str) -> list[Task]:
    """Tasks from a comma-separated list of names and task files, in order, each once."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise ConfigError("no task given; pass --tasks with names from `ocelli eval --list`")
    tasks = [load_task_file(n) if is_task_file(n) else TASKS.get(n)() for n in names]
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ConfigError(f"task {task.name!r} is given twice; each task runs once per run")
        seen.add(task.name)
    return tasks


__all__ = ["TASKS", "Aggregate", "Sample", "Task", "register_task", "resolve_tasks"]
