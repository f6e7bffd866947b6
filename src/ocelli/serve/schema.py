"""The request and response bodies of the OpenAI-compatible API, as pydantic models.

FastAPI validates requests against these and writes /openapi.json from them, so the
published description is the one the server enforces. Requests forbid unknown fields:
a misspelt `max_token` is a 422 naming it, not a silently ignored setting."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Pixel detail is an OpenAI hint ocelli's fixed-size encoders have no use for; accepted
# so clients that always send it work.
Detail = Literal["auto", "low", "high"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageUrl(Strict):
    url: str = Field(description="data:image/png|jpeg|webp;base64,... or, when enabled, http(s)")
    detail: Detail = "auto"


class ImageUrlPart(Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class TextPart(Strict):
    type: Literal["text"]
    text: str


ContentPart = Annotated[TextPart | ImageUrlPart, Field(discriminator="type")]


class Message(Strict):
    # "developer" is OpenAI's newer name for the system role.
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False


class VCDOptions(Strict):
    """Visual contrastive decoding (ocelli.generate.logits.VCDConfig's ranges)."""

    alpha: float = Field(default=1.0, ge=0.0, le=10.0, description="contrast strength")
    beta: float = Field(default=0.1, ge=0.0, le=1.0, description="plausibility cut-off")
    noise_step: int = Field(default=500, ge=0, le=999, description="diffusion step, of 1000")


class OcelliOptions(Strict):
    """ocelli's extensions; OpenAI clients send them as extra_body={"ocelli": {...}}."""

    vcd: VCDOptions | None = Field(
        default=None, description="decode with VCD (not batched: one request at a time)"
    )
    correct: bool = Field(
        default=False,
        description="check the answer's claims against the last image (detector and the "
        "model's own yes/no answers) and rewrite it with boxes; stream=false only",
    )


class ChatCompletionRequest(Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logprobs: bool = False
    # vLLM's extension, for benchmarks: generate max_tokens tokens whatever the model says.
    ignore_eos: bool = False
    ocelli: OcelliOptions | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


FinishReason = Literal["stop", "length"]


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None
    # With "ocelli": {"correct": true}: the original answer, each claim's verdict, the
    # detected objects' boxes (ocelli.align.corrector.Correction.to_dict()).
    ocelli_correction: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ocelli"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "draining"]
    running: int
    waiting: int
