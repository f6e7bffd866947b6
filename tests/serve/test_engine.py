"""The batching engine on its own: batched greedy decoding equals one-at-a-time decoding,
requests join and leave a running batch, and seeded sampling ignores batch company."""

from __future__ import annotations

import asyncio

import pytest

from ocelli.serve import Engine, Prompt, SamplingParams

from .conftest import png_bytes, wait_until

QUESTIONS = [
    "What colour is the cube?",
    "How many green cylinders are there to the left of the big blue sphere?",
    "有几个球？",
    "Is there a red cube?",
    "Describe the scene in detail, object by object.",
    "Two.",
    "Where is the small sphere?",
    "What is behind the cylinder?",
]


def make_prompt(pipeline, question: str, with_image: bool) -> Prompt:
    images = [png_bytes(len(question))] if with_image else []
    messages = pipeline.conversation(images, question)
    input_ids = pipeline.processor.encode_prompt(messages, len(images))["input_ids"]
    pixels = pipeline.processor.image_processor(images) if images else None
    return Prompt(input_ids, pixels)


@pytest.fixture
def engine(pipeline, one_thread):
    engine = Engine(pipeline.model, pipeline.processor, max_batch_size=8).start()
    yield engine
    assert engine.shutdown(timeout=30)


def run(coroutine):
    return asyncio.run(coroutine)


async def complete(engine, prompt, params):
    return await engine.submit(prompt, params).result()


def test_batched_greedy_equals_single_requests(engine, pipeline):
    prompts = [make_prompt(pipeline, q, with_image=i % 2 == 0) for i, q in enumerate(QUESTIONS)]
    params = SamplingParams(max_tokens=12)

    async def one_at_a_time():
        return [await complete(engine, p, params) for p in prompts]

    async def together():
        return await asyncio.gather(*(complete(engine, p, params) for p in prompts))

    single, batched = run(one_at_a_time()), run(together())
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    # And both are what the library's generate-based pipeline answers.
    expected = pipeline.chat([png_bytes(len(QUESTIONS[0]))], QUESTIONS[0], max_new_tokens=12)
    assert single[0].text == expected


def test_requests_join_and_leave_a_running_batch(engine, pipeline):
    long_prompt = make_prompt(pipeline, QUESTIONS[4], with_image=True)
    short_prompt = make_prompt(pipeline, QUESTIONS[1], with_image=False)
    alone = run(complete(engine, short_prompt, SamplingParams(max_tokens=6, ignore_eos=True)))

    async def scenario():
        long = engine.submit(long_prompt, SamplingParams(max_tokens=400, ignore_eos=True))
        deltas = long.deltas()
        await anext(deltas)  # the long request is decoding; the short one joins its batch
        short = engine.submit(short_prompt, SamplingParams(max_tokens=6, ignore_eos=True))
        short_result = await short.result()
        while engine.num_running == 2:  # the short one leaves after its last step
            await asyncio.sleep(0.001)
        still_running = engine.num_running  # the long one goes on
        async for _ in deltas:
            pass
        return short_result, long.completion, still_running

    short_result, long_result, still_running = run(scenario())
    assert still_running == 1
    assert short_result.text == alone.text
    assert long_result.completion_tokens == 400 and long_result.finish_reason == "length"
    assert wait_until(lambda: engine.num_running == 0 and engine.num_waiting == 0)


def test_seeded_sampling_does_not_depend_on_batch_company(engine, pipeline):
    prompt = make_prompt(pipeline, QUESTIONS[0], with_image=True)
    seeded = SamplingParams(max_tokens=10, temperature=1.2, top_p=0.9, seed=11)
    alone = run(complete(engine, prompt, seeded))

    async def in_company():
        others = [
            complete(engine, make_prompt(pipeline, q, False), SamplingParams(max_tokens=10))
            for q in QUESTIONS[1:5]
        ]
        return (await asyncio.gather(complete(engine, prompt, seeded), *others))[0]

    assert run(in_company()).text == alone.text


def test_more_requests_than_slots_queue_and_all_finish(pipeline, one_thread):
    engine = Engine(pipeline.model, pipeline.processor, max_batch_size=2).start()
    prompts = [make_prompt(pipeline, q, False) for q in QUESTIONS]

    async def flood():
        params = SamplingParams(max_tokens=5, ignore_eos=True)
        return await asyncio.gather(*(complete(engine, p, params) for p in prompts))

    assert [c.completion_tokens for c in run(flood())] == [5] * len(prompts)
    assert engine.shutdown(timeout=30)


def test_a_prompt_that_fills_the_context_is_refused(engine):
    from ocelli.errors import PromptError

    async def submit():
        engine.submit(Prompt([1] * 5000), SamplingParams())

    with pytest.raises(PromptError, match="context"):
        run(submit())


def test_requests_admitted_together_answer_as_one_by_one(pipeline, one_thread):
    """Sequences queued before the engine starts are prefilled in one forward pass (left
    padded, images in order) and decoded as one batch, yet give each one's own answer."""
    prompts = [make_prompt(pipeline, q, with_image=i % 3 != 1) for i, q in enumerate(QUESTIONS)]
    params = SamplingParams(max_tokens=16)

    def serve(together: bool) -> tuple[list[str], list[int]]:
        engine = Engine(pipeline.model, pipeline.processor, max_batch_size=len(prompts))
        prefill_sizes: list[int] = []
        prefill = engine._prefill

        def counted(joiners):
            prefill_sizes.append(len(joiners))
            prefill(joiners)

        engine._prefill = counted

        async def requests():
            if together:  # all queued before the worker thread takes the first
                handles = [engine.submit(p, params) for p in prompts]
                engine.start()
                return [await h.result() for h in handles]
            engine.start()
            return [await engine.submit(p, params).result() for p in prompts]

        completions = run(requests())
        assert engine.shutdown(timeout=30)
        return [c.text for c in completions], prefill_sizes

    alone, alone_sizes = serve(together=False)
    batched, batched_sizes = serve(together=True)
    assert alone_sizes == [1] * len(prompts) and batched_sizes == [len(prompts)]
    assert batched == alone


def test_admission_waits_for_company_while_a_batch_decodes(pipeline, one_thread):
    """With admission_wait_steps, a newcomer joins a decoding batch after at most that
    many steps, and its answer is the one it gets alone."""
    engine = Engine(pipeline.model, pipeline.processor, max_batch_size=8, admission_wait_steps=3)
    steps = {"decoded": 0, "at_prefill": [], "held": 0}
    decode_step, prefill, hold = engine._decode_step, engine._prefill, engine._hold_admissions

    def counted_hold():
        held = hold()
        steps["held"] += held
        return held

    def counted_decode():
        steps["decoded"] += 1
        decode_step()

    def counted_prefill(joiners):
        steps["at_prefill"].append(steps["decoded"])
        prefill(joiners)

    engine._decode_step, engine._prefill = counted_decode, counted_prefill
    engine._hold_admissions = counted_hold
    engine.start()
    long_prompt = make_prompt(pipeline, QUESTIONS[4], with_image=True)
    short_prompt = make_prompt(pipeline, QUESTIONS[0], with_image=False)
    short_params = SamplingParams(max_tokens=8, ignore_eos=True)
    alone = run(complete(engine, short_prompt, short_params))

    async def scenario():
        long = engine.submit(long_prompt, SamplingParams(max_tokens=60, ignore_eos=True))
        while engine.num_running == 0:
            await asyncio.sleep(0.001)
        short = engine.submit(short_prompt, short_params)
        submitted_at = steps["decoded"]
        result = await short.result()
        return result, await long.result(), submitted_at

    short, long, submitted_at = run(scenario())
    assert short.text == alone.text
    assert long.completion_tokens == 60
    # held while the long one decoded, for at most 3 steps (+1: the step under way)
    assert steps["held"] == 3
    assert steps["at_prefill"][-1] - submitted_at <= 4
    assert engine.shutdown(timeout=30)


def test_a_ready_made_decode_mask_gives_the_same_tokens(pipeline, one_thread):
    """With sdpa the engine hands each decode step its padding mask in 4D; transformers'
    own mask from the 2D one must give the same answers (padded rows included)."""
    prompts = [make_prompt(pipeline, q, with_image=i % 2 == 0) for i, q in enumerate(QUESTIONS)]
    params = SamplingParams(max_tokens=12, ignore_eos=True)

    def answers(ready_mask: bool) -> list[str]:
        engine = Engine(pipeline.model, pipeline.processor, max_batch_size=8)
        assert engine._ready_mask  # the tests' model uses sdpa
        engine._ready_mask = ready_mask
        engine.start()

        async def together():
            return await asyncio.gather(*(complete(engine, p, params) for p in prompts))

        try:
            return [c.text for c in run(together())]
        finally:
            assert engine.shutdown(timeout=30)

    assert answers(ready_mask=True) == answers(ready_mask=False)


def test_length_groups_pay_for_a_pass_rather_than_much_padding():
    from ocelli.serve.engine import PREFILL_PASS_TOKENS, length_groups

    assert length_groups([]) == []
    assert length_groups([90, 91, 89, 92]) == [[2, 0, 1, 3]]  # one pass, shortest first
    long = 2 * PREFILL_PASS_TOKENS
    assert length_groups([10, long, 12, long + 5]) == [[0, 2], [1, 3]]


def test_prompts_of_different_lengths_prefill_in_passes_and_answer_as_alone(pipeline, one_thread):
    """Admitted together, short text prompts and long image prompts are prefilled in
    separate passes, the longest first, and still give each one's own answer."""
    prompts = [make_prompt(pipeline, q, with_image=i < 3) for i, q in enumerate(QUESTIONS)]
    params = SamplingParams(max_tokens=10, ignore_eos=True)
    engine = Engine(pipeline.model, pipeline.processor, max_batch_size=len(prompts))
    passes: list[list[int]] = []
    prefill_together = engine._prefill_together

    def counted(joiners):
        passes.append([len(s.prompt.input_ids) for s in joiners])
        prefill_together(joiners)

    engine._prefill_together = counted

    async def together():
        handles = [engine.submit(p, params) for p in prompts]  # queued before the start
        engine.start()
        return [await h.result() for h in handles]

    batched = run(together())
    assert engine.shutdown(timeout=30)
    assert len(passes) > 1 and max(passes[0]) == max(len(p.input_ids) for p in prompts)
    assert sorted(n for group in passes for n in group) == sorted(len(p.input_ids) for p in prompts)
    single = Engine(pipeline.model, pipeline.processor, max_batch_size=1).start()
    alone = [run(complete(single, p, params)) for p in prompts]
    assert single.shutdown(timeout=30)
    assert [c.text for c in batched] == [c.text for c in alone]
