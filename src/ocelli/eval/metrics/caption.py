"""Captioning metrics as the COCO caption evaluation computes them.

CIDEr-D is implemented here (and pinned to pycocoevalcap's `Cider` to 1e-6 by the
tests) so captions in any language can be scored without Java once tokenised; BLEU-4,
ROUGE-L and METEOR are pycocoevalcap's own scorers. English captions go through
pycocoevalcap's PTB tokenizer (Stanford CoreNLP on Java), as in every published COCO
figure; Chinese ones are split into characters, the usual practice for CIDEr on Chinese.

Document frequencies come from the evaluated set, so a CIDEr-D figure depends on which
images are scored: compare figures only over the same image list.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence

from ocelli.errors import ConfigError

NGRAM_ORDER = 4
SIGMA = 6.0  # CIDEr-D's length penalty: exp(-(len_hyp - len_ref)^2 / (2 sigma^2))
CAPTION_METRICS = ("cider", "bleu4", "rouge_l", "meteor")

Ngrams = Counter[tuple[str, ...]]


def _ngrams(sentence: str) -> Ngrams:
    words = sentence.split()
    return Counter(
        tuple(words[i : i + k])
        for k in range(1, NGRAM_ORDER + 1)
        for i in range(len(words) - k + 1)
    )


def _tfidf(
    counts: Ngrams, doc_freq: Counter, log_num_docs: float
) -> tuple[list[dict], list[float], int]:
    """Per-order tf-idf vectors, their norms, and the length CIDEr-D compares. As in the
    reference implementation the "length" is the number of bigrams, not of words."""
    vectors: list[dict] = [{} for _ in range(NGRAM_ORDER)]
    squares = [0.0] * NGRAM_ORDER
    length = 0
    for ngram, term_freq in counts.items():
        order = len(ngram) - 1
        weight = term_freq * (log_num_docs - math.log(max(1.0, doc_freq[ngram])))
        vectors[order][ngram] = weight
        squares[order] += weight * weight
        if order == 1:
            length += term_freq
    return vectors, [math.sqrt(s) for s in squares], length


def _similarity(hyp: tuple, ref: tuple) -> float:
    (hyp_vec, hyp_norm, hyp_len), (ref_vec, ref_norm, ref_len) = hyp, ref
    penalty = math.exp(-((hyp_len - ref_len) ** 2) / (2 * SIGMA**2))
    total = 0.0
    for order in range(NGRAM_ORDER):
        # CIDEr-D clips each hypothesis weight at the reference's, so repeating a word
        # cannot raise the score.
        value = sum(
            min(weight, ref_vec[order].get(ngram, 0.0)) * ref_vec[order].get(ngram, 0.0)
            for ngram, weight in hyp_vec[order].items()
        )
        if hyp_norm[order] != 0 and ref_norm[order] != 0:
            value /= hyp_norm[order] * ref_norm[order]
        total += value * penalty
    return total / NGRAM_ORDER


def cider_d(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> tuple[float, dict[str, float]]:
    """Corpus CIDEr-D (x10, as reported) and each image's score, over tokenised text.

    `references[id]` are the reference captions of image `id`; `predictions[id]` the one
    generated caption. Document frequencies are counted over all images given."""
    _check_same_ids(references, predictions)
    ref_counts = {key: [_ngrams(r) for r in refs] for key, refs in references.items()}
    doc_freq: Counter = Counter()
    for counts in ref_counts.values():
        doc_freq.update(set().union(*counts))
    log_num_docs = math.log(float(len(references)))
    per_image = {}
    for key, refs in ref_counts.items():
        hyp = _tfidf(_ngrams(predictions[key]), doc_freq, log_num_docs)
        scores = [_similarity(hyp, _tfidf(ref, doc_freq, log_num_docs)) for ref in refs]
        per_image[key] = 10.0 * sum(scores) / len(scores)
    return sum(per_image.values()) / len(per_image), per_image


def _check_same_ids(references: Mapping, predictions: Mapping) -> None:
    if not references:
        raise ValueError("no captions to score")
    if set(references) != set(predictions):
        raise ValueError("references and predictions must cover the same image ids")
    if any(not refs for refs in references.values()):
        raise ValueError("every image needs at least one reference caption")


def tokenize(captions: Mapping[str, Sequence[str]], lang: str = "en") -> dict[str, list[str]]:
    """English: pycocoevalcap's PTB tokenizer (lower case, punctuation dropped).
    Chinese: characters separated by spaces, punctuation dropped."""
    if lang == "zh":
        return {key: [_chinese_tokens(text) for text in texts] for key, texts in captions.items()}
    _require_java("the PTB tokenizer of English captions")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    keys = list(captions)
    # The tokenizer loses empty captions (blank lines); give them a placeholder word
    # that no reference contains, then empty them again.
    placeholder = "emptycaptionplaceholder"
    wrapped = {
        str(index): [{"caption": text if text.strip() else placeholder} for text in captions[key]]
        for index, key in enumerate(keys)
    }
    tokenized = PTBTokenizer().tokenize(wrapped)
    return {
        key: [t if t != placeholder else "" for t in tokenized.get(str(index), [])]
        for index, key in enumerate(keys)
    }


_CHINESE_PUNCTUATION = set("，。！？；：、“”‘’（）《》…—,.!?;:\"'()")


def _chinese_tokens(text: str) -> str:
    return " ".join(
        ch for ch in text.lower() if not ch.isspace() and ch not in _CHINESE_PUNCTUATION
    )


def _require_java(purpose: str) -> None:
    if shutil.which("java") is None:
        raise ConfigError(
            f"java was not found on PATH; {purpose} needs a Java runtime (17 works): "
            "install one (e.g. apt-get install default-jre-headless) or drop the caption tasks"
        )


def caption_metrics(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    lang: str = "en",
    metrics: Sequence[str] = CAPTION_METRICS,
) -> tuple[dict[str, float], dict[str, float]]:
    """Tokenise, then score: ({metric: corpus value}, {image id: CIDEr-D}).

    METEOR runs on Java and only for English (its paraphrase tables are English)."""
    unknown = set(metrics) - set(CAPTION_METRICS)
    if unknown:
        raise ConfigError(f"unknown caption metric(s) {sorted(unknown)}; use {CAPTION_METRICS}")
    _check_same_ids(references, predictions)
    refs = tokenize(references, lang)
    hyps = {
        key: texts[0]
        for key, texts in tokenize({k: [v] for k, v in predictions.items()}, lang).items()
    }
    cider, per_image = cider_d(refs, hyps)
    values: dict[str, float] = {"cider": cider}
    gts = {key: list(texts) for key, texts in refs.items()}
    res = {key: [text] for key, text in hyps.items()}
    if "bleu4" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        values["bleu4"] = float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    if "rouge_l" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        values["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    if "meteor" in metrics and lang == "en":
        values["meteor"] = _meteor(gts, res)
    return {k: v for k, v in values.items() if k in metrics}, per_image


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    _require_java("METEOR")
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        return float(scorer.compute_score(gts, res)[0])
    finally:
        del scorer  # its __del__ stops the Java process
