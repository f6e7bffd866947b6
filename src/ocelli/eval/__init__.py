"""Evaluation: tasks by name, the field's metrics, a resumable runner, reports.

    from ocelli.eval import evaluate
    evaluate("runs/quickstart/instruct/final", "world_vqa,pope_adversarial,mme",
             "runs/eval", data_dir="runs/quickstart/world/test")

See docs/evaluation.md for the protocols, the output directory and adding a task.
"""

from ocelli.eval.compare import compare_runs
from ocelli.eval.harness import evaluate
from ocelli.eval.tasks import TASKS, Sample, Task, register_task, resolve_tasks

__all__ = ["TASKS", "Sample", "Task", "compare_runs", "evaluate", "register_task", "resolve_tasks"]
