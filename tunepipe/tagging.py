"""Tag schemes, sub-token label alignment and entity-level metrics for token classification.

The entity logic reproduces seqeval 1.2.2's default (conlleval-compatible) mode so that scores
reported here agree with the numbers people quote, without making seqeval a runtime dependency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

IGNORE_INDEX = -100  # the label id PyTorch's cross-entropy skips

_IOB_TAG = re.compile(r"^[BI]-.+")


def label_order(names: set[str]) -> list[str]:
    """Label names in id order when params declare none (load records them, tokenize numbers them):
    numbers in numeric order (2 before 10); IOB tags as O, then B-/I- pairs by type; else sorted."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    if "O" in names and all(n == "O" or n[:2] in ("B-", "I-") for n in names):
        return ["O"] + sorted(names - {"O"}, key=lambda n: (n[2:], n[:2]))
    return sorted(names)


def detect_scheme(tags: Iterable[str]) -> str:
    """Say whether tags are IOB chunk tags ("iob") or plain labels such as POS tags ("none")."""
    seen_chunk = False
    for tag in tags:
        if tag == "O":
            continue
        if not _IOB_TAG.match(tag):
            return "none"
        seen_chunk = True
    return "iob" if seen_chunk else "none"


def resolve_scheme(tag_scheme: str, train_tags: Iterable[Sequence[str] | None]) -> str:
    """load.tag_scheme, with `auto` settled from the training tags (iob2 when they are IOB)."""
    if tag_scheme != "auto":
        return tag_scheme
    tags = [t for seq in train_tags if seq is not None for t in seq]
    return "iob2" if detect_scheme(tags) == "iob" else "none"


def iob_violations(tags: list[str], scheme: str = "iob2") -> list[int]:
    """Positions whose tag is illegal in `scheme` given the tag before it (sentence start counts as O).

    IOB2: every chunk opens with B-, so I-X must follow B-X or I-X.
    IOB1: chunks open with I-; B-X only separates two adjacent chunks of type X, so it must follow X.
    Tags that are neither O nor B-/I- are violations in both.
    """
    if scheme not in ("iob1", "iob2"):
        raise ValueError(f"unknown scheme {scheme!r}; expected 'iob1' or 'iob2'")
    bad = []
    prev = "O"
    for i, tag in enumerate(tags):
        if tag != "O" and not _IOB_TAG.match(tag):
            bad.append(i)
        elif tag != "O":
            prefix, type_ = tag[0], tag[2:]
            continues = prev in (f"B-{type_}", f"I-{type_}")
            if (scheme == "iob2" and prefix == "I" and not continues) or (
                scheme == "iob1" and prefix == "B" and not continues
            ):
                bad.append(i)
        prev = tag
    return bad


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], list[int]]:
    """(tags with each I-X that opens a chunk turned into B-X, the positions changed).

    The positions are iob_violations' for IOB2 (I-X after O, after another type, or first in the
    sentence); a tag that is neither O nor B-/I- is not IOB and stays as it is."""
    fixed = list(tags)
    changed = [i for i in iob_violations(fixed, "iob2") if fixed[i].startswith("I-")]
    for i in changed:
        fixed[i] = "B-" + fixed[i][2:]
    return fixed, changed


def _split_tag(tag: str, position: int) -> tuple[str, str]:
    """Prefix and type the way seqeval reads them: first character, then text after the first '-'.

    A tag without a type ("O", "B", a 1-letter label) gets the type "_". This is also why seqeval
    turns a plain tag such as "NNP" into a chunk of type "NP": it is not an IOB tag, so garbage in,
    garbage out, but matching it keeps our numbers identical to seqeval's.
    """
    if not tag:
        raise ValueError(f"empty tag at position {position}")
    rest = tag[1:]
    return tag[0], (rest.split("-", 1)[-1] or "_")


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """Chunks as (type, start, end_inclusive), decoded like conlleval / seqeval's default mode.

    Lenient on purpose: an I-X after O or after another type opens a new chunk instead of being
    dropped, so ill-formed predictions are scored the way the published numbers score them.
    E-/S- (IOBES) prefixes close chunks as in seqeval.
    """
    found: list[tuple[str, int, int]] = []
    prev_prefix, prev_type = "O", ""  # seqeval starts with an empty type, not O's "_"
    begin = 0
    for i, tag in enumerate([*tags, "O"]):  # the trailing O closes a chunk still open at the end
        prefix, type_ = _split_tag(tag, i)
        type_changed = prev_type != type_
        ends = (
            prev_prefix in ("E", "S")
            or (prev_prefix in ("B", "I") and prefix in ("B", "S", "O"))
            or (prev_prefix not in ("O", ".") and type_changed)
        )
        starts = (
            prefix in ("B", "S")
            or (prev_prefix in ("E", "S", "O") and prefix in ("E", "I"))
            or (prefix not in ("O", ".") and type_changed)
        )
        if ends:
            found.append((prev_type, begin, i - 1))
        if starts:
            begin = i
        prev_prefix, prev_type = prefix, type_
    return found


def _check_lengths(references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} reference sentences but {len(predictions)} predicted")
    for i, (ref, pred) in enumerate(zip(references, predictions, strict=True)):
        if len(ref) != len(pred):
            raise ValueError(f"sentence {i}: {len(ref)} reference tags but {len(pred)} predicted")


def token_accuracy(references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> float:
    """Share of tokens whose predicted tag equals the reference tag (0.0 when there are no tokens)."""
    _check_lengths(references, predictions)
    total = sum(len(ref) for ref in references)
    correct = sum(
        r == p
        for ref, pred in zip(references, predictions, strict=True)
        for r, p in zip(ref, pred, strict=True)
    )
    return correct / total if total else 0.0


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with 0.0 on zero division; F1 computed as seqeval does, bit for bit."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    denom = precision + recall
    return precision, recall, (2.0 * precision * recall / denom if denom else 0.0)


def _corpus_entities(sentences: Sequence[Sequence[str]]) -> set[tuple[str, int, int]]:
    """Entities of all sentences joined with an O between them, as seqeval does with nested lists.

    The separating O keeps chunks inside their sentence; the global offsets keep them distinct.
    """
    joined: list[str] = []
    for sentence in sentences:
        joined.extend(sentence)
        joined.append("O")
    return set(entities(joined))


def entity_scores(references: list[list[str]], predictions: list[list[str]]) -> dict:
    """Micro-averaged entity precision/recall/F1, token accuracy and per-type scores.

    An entity counts as correct only if type, start and end all match (exact-match, like conlleval).
    Per-type entries cover every type seen in references or predictions; support is the number
    of reference entities of that type.
    """
    _check_lengths(references, predictions)
    true = _corpus_entities(references)
    pred = _corpus_entities(predictions)
    hits = true & pred
    per_type = {}
    for type_ in sorted({t for t, _, _ in true} | {t for t, _, _ in pred}):
        n_true = sum(e[0] == type_ for e in true)
        p, r, f = _prf(sum(e[0] == type_ for e in hits), sum(e[0] == type_ for e in pred), n_true)
        per_type[type_] = {"precision": p, "recall": r, "f1": f, "support": n_true}
    precision, recall, f1 = _prf(len(hits), len(pred), len(true))
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": token_accuracy(references, predictions),
        "per_type": per_type,
    }


def first_subtoken_mask(word_ids: Sequence[int | None]) -> list[int]:
    """1 at the first sub-token of each word, 0 at later sub-tokens and special tokens.

    Word-level predictions are read off these positions, so each word is scored exactly once.
    """
    mask = []
    prev: int | None = None
    for word in word_ids:
        mask.append(int(word is not None and word != prev))
        prev = word
    return mask


def align_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    label_all_subtokens: bool = False,
    b_to_i: Sequence[int] | None = None,
) -> list[int]:
    """Per-sub-token label ids for a tokenizer's word_ids(): the word's label on its first piece.

    Special tokens get IGNORE_INDEX. Later pieces get IGNORE_INDEX too, unless label_all_subtokens,
    in which case they repeat the label, turned from B-X into I-X via b_to_i so that a word split
    in three does not look like three entities.
    """
    labels = []
    prev: int | None = None
    for position, word in enumerate(word_ids):
        if word is None:
            labels.append(IGNORE_INDEX)
        elif not 0 <= word < len(word_labels):
            raise ValueError(
                f"sub-token {position} belongs to word {word}, but only {len(word_labels)} word labels"
            )
        elif word != prev:
            labels.append(word_labels[word])
        elif label_all_subtokens:
            label = word_labels[word]
            labels.append(b_to_i[label] if b_to_i is not None and label >= 0 else label)
        else:
            labels.append(IGNORE_INDEX)
        prev = word
    return labels


def b_to_i_map(labels: Sequence[str]) -> list[int]:
    """For each label id, the id of I-X when the label is B-X and I-X exists; itself otherwise."""
    index = {label: i for i, label in enumerate(labels)}
    return [index.get(f"I-{label[2:]}", i) if label.startswith("B-") else i for i, label in enumerate(labels)]


def spans(
    text: str, word_offsets: Sequence[tuple[int, int]], word_tags: Sequence[str], word_scores: Sequence[float]
) -> list[dict]:
    """Entities as character spans of `text`, scored by the mean of their words' scores.

    This is the shape an inference API returns, so clients can highlight text without re-tokenizing.
    """
    if not len(word_offsets) == len(word_tags) == len(word_scores):
        raise ValueError(
            f"{len(word_offsets)} word offsets, {len(word_tags)} tags and {len(word_scores)} scores; "
            "expected one of each per word"
        )
    result = []
    for type_, first, last in entities(list(word_tags)):
        start, end = word_offsets[first][0], word_offsets[last][1]
        scores = word_scores[first : last + 1]
        result.append(
            {
                "entity": type_,
                "start": start,
                "end": end,
                "text": text[start:end],
                "score": round(float(sum(scores)) / len(scores), 6),
            }
        )
    return result
