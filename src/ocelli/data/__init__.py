"""Data: the chat template, tokenizers, images and the processor that turns
conversations with images into model inputs."""

from ocelli.data.chat_template import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    count_image_placeholders,
    llava_to_messages,
    normalize_messages,
    render_chat,
)
from ocelli.data.collate import ConversationDataset, PadCollator, count_tokens
from ocelli.data.formats import ConversationRecord, load_conversations
from ocelli.data.images import DEFAULT_MAX_PIXELS, ImageProcessor, load_image, to_rgb
from ocelli.data.processing import IGNORE_INDEX, OcelliProcessor
from ocelli.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_MAX_PIXELS",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "ConversationDataset",
    "ConversationRecord",
    "ImageProcessor",
    "OcelliProcessor",
    "PadCollator",
    "count_image_placeholders",
    "count_tokens",
    "llava_to_messages",
    "load_conversations",
    "load_image",
    "load_tokenizer",
    "normalize_messages",
    "render_chat",
    "to_rgb",
    "train_tokenizer",
]
