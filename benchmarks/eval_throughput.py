"""Samples/s of `ocelli eval` on world_vqa against a plain batch-size-1 generate loop.

The same model, the same samples and the same thread count, in one process; the sides
alternate round by round so a change in machine load hits them alike. Sides:
- loop: `pipeline.chat(image, question)` one sample at a time (model.generate at batch
  size 1, greedy), answers scored afterwards; the baseline any script starts from;
- harness (generate): `evaluate(..., "world_vqa")` end to end at its default batch size:
  batched greedy generation with each image's prefix run once per batch
  (ocelli.eval.shared_prefix), per-sample records on disk, metrics, results.json,
  results.md and report.html;
- harness (loglik): `evaluate(..., scoring="loglik")`: the closed questions ranked by the
  log-likelihood of their candidate answers (reasoning questions have no closed set, so
  the loop's rate for it is taken over the same closed questions).

    python benchmarks/eval_throughput.py                      # the quickstart model
    python benchmarks/eval_throughput.py --set tiny=true      # a tiny random model (smoke)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common

NAME = "eval_throughput"
SIDES = ("loop", "harness_generate", "harness_loglik")


@dataclass
class EvalThroughputConfig:
    model_dir: str = "/tmp/exp/qs1/instruct/final"
    data_dir: str = "/tmp/exp/qs1/world/test"
    tiny: bool = False  # a tiny random model and a 4-image world instead of the two dirs
    num_samples: int = 96  # the first questions of world_vqa
    batch_size: int = 64  # evaluate()'s default
    rounds: int = 2


def _tiny_inputs(work: Path) -> tuple[Path, Path]:
    """A random 1-layer model (tokenizer trained on the world's own text) and a world."""
    from ocelli.world import WorldConfig, generate_dataset

    world = work / "world"
    generate_dataset(
        world, 4, seed=3, split="test", config=WorldConfig(langs=["en"]), progress=False
    )
    text = (world / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    model_dir = common.save_tiny_model(
        work / "model", text, vocab_size=300, language_model_overrides={"num_hidden_layers": 1}
    )
    return model_dir, world


def _loop(
    pipeline: Any, samples: list[Any], max_new_tokens: int
) -> tuple[list[str], list[float], list[float]]:
    """The baseline: one sample at a time; the answers, each sample's wall-clock seconds
    and its CPU seconds."""
    answers, seconds, cpu_seconds = [], [], []
    for sample in samples:
        began, cpu_began = time.perf_counter(), time.process_time()
        answers.append(
            pipeline.chat(
                sample.images, sample.prompt, max_new_tokens=max_new_tokens, do_sample=False
            )
        )
        seconds.append(time.perf_counter() - began)
        cpu_seconds.append(time.process_time() - cpu_began)
    return answers, seconds, cpu_seconds


def _harness(
    backend: Any, task: Any, config: Any, data: Path, work: Path, scoring: str
) -> dict[str, Any]:
    from ocelli.eval import evaluate

    with tempfile.TemporaryDirectory(dir=work) as out:
        began, cpu_began = time.perf_counter(), time.process_time()
        results = evaluate(
            backend,
            [task],
            out,
            data,
            batch_size=config.batch_size,
            scoring=scoring,
            progress=False,
        )
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    (task,) = results["tasks"].values()
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "answer_seconds": task["seconds"],  # asking and storing; the rest is scoring, reports
        "num_samples": task["num_scored"],
        "accuracy": round(task["metrics"]["accuracy"], 4),
    }


def run(config: EvalThroughputConfig, threads: int | None) -> dict[str, Any]:
    from ocelli.eval.backends import LocalBackend
    from ocelli.eval.tasks import TASKS
    from ocelli.eval.world_vqa import is_correct
    from ocelli.generate import load

    threads = common.set_threads(threads)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        work = Path(tmp)
        model_dir, data = (
            _tiny_inputs(work) if config.tiny else (Path(config.model_dir), Path(config.data_dir))
        )
        pipeline = load(model_dir)
        backend = LocalBackend.from_pipeline(pipeline, model_dir)
        task = TASKS.get("world_vqa")()
        samples = task.build(data)[: config.num_samples]
        task.build = lambda _data: samples  # the harness asks exactly the loop's samples
        closed = [task.candidates(s) is not None for s in samples]
        timings: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for round_index in range(config.rounds):
            order = SIDES if round_index % 2 == 0 else SIDES[::-1]
            for side in order:
                if side == "loop":
                    answers, seconds, cpu = _loop(pipeline, samples, task.max_new_tokens)
                    correct = [
                        is_correct(a, s.truth, s.meta.get("type") or "")
                        for a, s in zip(answers, samples, strict=True)
                    ]
                    timings[side].append(
                        {
                            "seconds": sum(seconds),
                            "closed_seconds": sum(
                                t for t, c in zip(seconds, closed, strict=True) if c
                            ),
                            "cpu_seconds": sum(cpu),
                            "closed_cpu_seconds": sum(
                                t for t, c in zip(cpu, closed, strict=True) if c
                            ),
                            "num_samples": len(samples),
                            "accuracy": round(sum(correct) / len(correct), 4),
                        }
                    )
                else:
                    scoring = side.split("_", 1)[1]
                    timings[side].append(_harness(backend, task, config, data, work, scoring))
    return _summarise(timings, sum(closed), threads, load_before, str(model_dir), str(data))


def _summarise(
    timings: dict[str, list[dict[str, Any]]],
    num_closed: int,
    threads: int,
    load_before: float | None,
    model_dir: str,
    data_dir: str,
) -> dict[str, Any]:
    def best(side: str, key: str = "seconds") -> float:
        return min(entry[key] for entry in timings[side])

    loop_rate = timings["loop"][0]["num_samples"] / best("loop")
    loop_closed_rate = num_closed / best("loop", "closed_seconds") if num_closed else 0.0
    generate_rate = timings["harness_generate"][0]["num_samples"] / best("harness_generate")
    loglik_rate = timings["harness_loglik"][0]["num_samples"] / best("harness_loglik")
    return {
        "model_dir": model_dir,
        "data_dir": data_dir,
        "threads": threads,
        "load_average": load_before,
        "load_average_after": common.load_average(),
        "num_closed_samples": num_closed,
        "rounds": timings,
        "samples_per_s": {
            "loop": round(loop_rate, 3),
            "loop_closed": round(loop_closed_rate, 3),
            "harness_generate": round(generate_rate, 3),
            "harness_loglik": round(loglik_rate, 3),
        },
        "speedup_generate": round(generate_rate / loop_rate, 2),
        "speedup_loglik": round(loglik_rate / loop_closed_rate, 2) if loop_closed_rate else None,
        # The same ratios in CPU time (one thread): on a loaded shared machine wall-clock
        # rounds of one side vary 2-3x, CPU time much less.
        "cpu_speedup_generate": round(
            best("loop", "cpu_seconds") / best("harness_generate", "cpu_seconds"), 2
        ),
        "cpu_speedup_loglik": round(
            best("loop", "closed_cpu_seconds") / best("harness_loglik", "cpu_seconds"), 2
        )
        if num_closed
        else None,
        "accuracy": {side: timings[side][0]["accuracy"] for side in SIDES},
        # Samples/s of asking alone, without scoring and writing results and report.
        "answer_samples_per_s": {
            side: round(timings[side][0]["num_samples"] / best(side, "answer_seconds"), 3)
            for side in SIDES[1:]
        },
    }


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    rates = results["samples_per_s"]
    rows = [
        [
            "plain loop, `pipeline.chat` at batch size 1",
            results["rounds"]["loop"][0]["num_samples"],
            rates["loop"],
            "1.00",
            results["accuracy"]["loop"],
        ],
        [
            "harness, batched generation",
            results["rounds"]["harness_generate"][0]["num_samples"],
            rates["harness_generate"],
            f"{results['speedup_generate']:.2f}",
            results["accuracy"]["harness_generate"],
        ],
        [
            "plain loop, the closed questions only",
            results["num_closed_samples"],
            rates["loop_closed"],
            "1.00",
            "-",
        ],
        [
            "harness, log-likelihood ranking (closed questions)",
            results["rounds"]["harness_loglik"][0]["num_samples"],
            rates["harness_loglik"],
            f"{results['speedup_loglik']}",
            results["accuracy"]["harness_loglik"],
        ],
    ]
    table = common.markdown_table(["side", "samples", "samples/s", "vs loop", "accuracy"], rows)
    return (
        "### Evaluation throughput (`benchmarks/eval_throughput.py`)\n\n"
        f"world_vqa on `{results['data_dir']}` with `{results['model_dir']}`, batch size "
        f"{config['batch_size']}, best of {config['rounds']} alternated rounds per side; the "
        "harness times are `evaluate()` end to end (records, metrics, results.json and "
        "report.html included).\n\n"
        f"{table}\n\nAsking alone (without scoring, results.json and report.html): "
        f"{results['answer_samples_per_s']['harness_generate']} samples/s generating, "
        f"{results['answer_samples_per_s']['harness_loglik']} ranking.\n\n"
        f"In CPU time (one thread, so the machine's other load counts less): the harness "
        f"is {results.get('cpu_speedup_generate')}x the loop generating and "
        f"{results.get('cpu_speedup_loglik')}x ranking. Wall-clock seconds of the rounds: "
        + "; ".join(
            side + " " + ", ".join(f"{entry['seconds']:.1f}" for entry in entries)
            for side, entries in results["rounds"].items()
        )
        + ".\n\n"
        f"{common.caption(record)} 1-min load average after: "
        f"{results['load_average_after']}.\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return common.run_benchmark(
        NAME, EvalThroughputConfig, __doc__.split("\n\n")[0], run, render, argv
    )


if __name__ == "__main__":
    main()
