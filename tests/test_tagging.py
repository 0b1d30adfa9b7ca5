"""tunepipe.tagging against hand-derived numbers and against seqeval 1.2.2 (the reference, test-only)."""

from __future__ import annotations

import random
import warnings

import pytest
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from tunepipe.tagging import (
    IGNORE_INDEX,
    align_labels,
    b_to_i_map,
    detect_scheme,
    entities,
    entity_scores,
    first_subtoken_mask,
    iob_violations,
    spans,
    token_accuracy,
)

pytestmark = pytest.mark.unit

TYPES = ("PER", "LOC", "ORG")
ANY_TAG = ["O", *(f"{p}-{t}" for p in "BI" for t in TYPES)]
# Not IOB: IOBES prefixes, bare prefixes, a POS tag, punctuation; seqeval still decodes them somehow.
ODD_TAGS = ["E-PER", "S-LOC", "B", "I", "NNP", ".", "X"]


def _seqeval_scores(refs: list[list[str]], preds: list[list[str]]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined-metric and "not NE tag" warnings
        report = classification_report(refs, preds, output_dict=True)
        per_type = {
            name: {
                "precision": r["precision"],
                "recall": r["recall"],
                "f1": r["f1-score"],
                "support": r["support"],
            }
            for name, r in report.items()
            if not name.endswith(" avg")
        }
        return {
            "precision": precision_score(refs, preds),
            "recall": recall_score(refs, preds),
            "f1": f1_score(refs, preds),
            "accuracy": accuracy_score(refs, preds),
            "per_type": per_type,
        }


def _seqeval_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_entities(tags)


# --- hand-derived cases ---------------------------------------------------------------------------


def test_one_missed_entity() -> None:
    scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert scores["precision"] == 1.0
    assert scores["recall"] == 0.5
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == 0.75
    assert scores["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }


def test_wrong_type_counts_as_a_miss_and_a_false_alarm() -> None:
    scores = entity_scores([["B-ORG", "I-ORG", "O"]], [["B-LOC", "I-LOC", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert scores["accuracy"] == pytest.approx(1 / 3)
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["per_type"]["ORG"]["support"] == 1


def test_i_after_o_starts_an_entity_like_conlleval() -> None:
    scores = entity_scores([["O", "B-MISC", "I-MISC", "O"]], [["O", "I-MISC", "I-MISC", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"], scores["accuracy"]) == (1.0, 1.0, 1.0, 0.75)


def test_type_change_inside_a_chunk_splits_it() -> None:
    assert entities(["B-PER", "I-LOC", "I-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 2)]
    scores = entity_scores([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (scores["precision"], scores["recall"]) == (0.0, 0.0)


def test_entities_do_not_cross_sentences() -> None:
    refs = [["O", "B-PER"], ["I-PER", "O"]]
    preds = [["O", "B-PER"], ["B-PER", "O"]]
    scores = entity_scores(refs, preds)
    assert (scores["precision"], scores["recall"], scores["f1"], scores["accuracy"]) == (1.0, 1.0, 1.0, 0.75)


def test_micro_average_over_two_sentences() -> None:
    refs = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "B-PER"]]
    preds = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "O", "O"]]
    scores = entity_scores(refs, preds)
    # true: PER 0-1, LOC 3, ORG 0', PER 2'; predicted: PER 0-1, ORG 3, ORG 0'; correct: 2
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == 0.5
    assert scores["f1"] == pytest.approx(4 / 7)
    assert scores["accuracy"] == 0.75
    assert scores["per_type"]["PER"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert scores["per_type"]["ORG"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores == _seqeval_scores(refs, preds)


def test_no_entities_anywhere_gives_zeros_not_errors() -> None:
    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0, "per_type": {}}
    assert token_accuracy([], []) == 0.0


def test_unequal_lengths_name_the_sentence() -> None:
    with pytest.raises(ValueError, match="sentence 1"):
        entity_scores([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 reference sentences but 1"):
        token_accuracy([["O"], ["O"]], [["O"]])


@pytest.mark.parametrize(
    "tags",
    [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["I-PER", "I-PER", "B-PER", "I-LOC"],
        ["B-PER", "E-PER", "S-LOC", "I-LOC", "E-LOC", "O", "E-ORG"],
        ["B-PER-X", "I-PER-X", "B", "I", "O"],
        ["NNP", "NNP", "VBZ", ".", "DT", "NN"],
        [],
    ],
)
def test_entities_known_cases_match_seqeval(tags: list[str]) -> None:
    assert entities(tags) == _seqeval_entities(tags)


def test_plain_tags_decode_like_seqeval() -> None:
    # Surprising but faithful: seqeval reads "NNP" as prefix "N" + type "NP".
    assert entities(["NNP", "NNP", "VBZ"]) == [("NP", 0, 1), ("BZ", 2, 2)]


# --- random comparison with seqeval ---------------------------------------------------------------


def _iob2_sentence(rng: random.Random) -> list[str]:
    tags: list[str] = []
    for _ in range(rng.randint(1, 12)):
        prev = tags[-1] if tags else "O"
        if prev != "O" and rng.random() < 0.5:
            tags.append("I-" + prev[2:])
        elif rng.random() < 0.4:
            tags.append("B-" + rng.choice(TYPES))
        else:
            tags.append("O")
    return tags


def _iob1_sentence(rng: random.Random) -> list[str]:
    tags: list[str] = []
    for _ in range(rng.randint(1, 12)):
        prev = tags[-1] if tags else "O"
        if prev != "O" and rng.random() < 0.2:
            tags.append("B-" + prev[2:])  # IOB1 B- only between two chunks of one type
        elif rng.random() < 0.5:
            tags.append("I-" + rng.choice(TYPES))
        else:
            tags.append("O")
    return tags


def _perturb(rng: random.Random, tags: list[str], pool: list[str], rate: float) -> list[str]:
    return [rng.choice(pool) if rng.random() < rate else tag for tag in tags]


def _corpus(rng: random.Random, make, pool: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    refs = [make(rng) for _ in range(rng.randint(1, 8))]
    return refs, [_perturb(rng, ref, pool, rng.choice([0.0, 0.1, 0.3, 0.8])) for ref in refs]


@pytest.mark.parametrize("kind", ["iob2", "iob1", "ill-formed", "odd"])
def test_random_corpora_match_seqeval(kind: str) -> None:
    rng = random.Random(f"tagging-{kind}")
    make = {"iob2": _iob2_sentence, "iob1": _iob1_sentence}.get(kind, _iob2_sentence)
    pool = {"iob2": ANY_TAG, "iob1": ANY_TAG, "ill-formed": ANY_TAG, "odd": ANY_TAG + ODD_TAGS}[kind]
    for _ in range(150):
        refs, preds = _corpus(rng, make, pool)
        if kind in ("ill-formed", "odd"):
            refs = [_perturb(rng, ref, pool, 0.3) for ref in refs]
        assert entity_scores(refs, preds) == _seqeval_scores(refs, preds), (refs, preds)
        for sentence in refs + preds:
            assert entities(sentence) == _seqeval_entities(sentence), sentence


# --- schemes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["O", "B-PER", "I-PER"], "iob"),
        (iter(["I-LOC", "O"]), "iob"),
        (["O", "O"], "none"),
        ([], "none"),
        (["NN", "VBZ", "."], "none"),
        (["B-PER", "E-PER"], "none"),
        (["B-"], "none"),
    ],
)
def test_detect_scheme(tags, expected: str) -> None:
    assert detect_scheme(tags) == expected


MIXED = ["I-PER", "I-PER", "B-PER", "I-LOC", "B-ORG", "O", "B-LOC", "I-LOC", "B-LOC", "E-PER"]


def test_iob2_violations() -> None:
    # I-PER at sentence start, I-LOC after B-PER, E-PER is not IOB
    assert iob_violations(MIXED) == [0, 3, 9]
    assert iob_violations(["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-PER", "B-"]) == [5, 6]
    assert iob_violations([]) == []


def test_iob1_violations() -> None:
    # I- may open a chunk; B-ORG after I-LOC and B-LOC after O do not separate same-type chunks
    assert iob_violations(MIXED, scheme="iob1") == [4, 6, 9]
    assert iob_violations(["I-PER", "B-PER", "B-PER", "O", "I-LOC"], scheme="iob1") == []


def test_iob_violations_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="iobes"):
        iob_violations(["O"], scheme="iobes")


# --- sub-token alignment --------------------------------------------------------------------------

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# "[CLS] Ann Hu ##gging Paris ##ian ##s [SEP]": words Ann=B-PER, Hugging=I-PER, Parisians=B-LOC
WORD_IDS = [None, 0, 1, 1, 2, 2, 2, None]
WORD_LABELS = [1, 2, 3]


def test_b_to_i_map() -> None:
    assert b_to_i_map(LABELS) == [0, 2, 2, 4, 4]
    assert b_to_i_map(["O", "B-MISC", "B-PER", "I-PER"]) == [0, 1, 3, 3]


def test_align_labels_first_subtoken_only() -> None:
    assert align_labels(WORD_IDS, WORD_LABELS) == [IGNORE_INDEX, 1, 2, -100, 3, -100, -100, -100]
    assert first_subtoken_mask(WORD_IDS) == [0, 1, 1, 0, 1, 0, 0, 0]


def test_align_labels_all_subtokens() -> None:
    assert align_labels(WORD_IDS, WORD_LABELS, label_all_subtokens=True) == [-100, 1, 2, 2, 3, 3, 3, -100]
    with_map = align_labels(WORD_IDS, WORD_LABELS, label_all_subtokens=True, b_to_i=b_to_i_map(LABELS))
    assert with_map == [-100, 1, 2, 2, 3, 4, 4, -100]


def test_align_labels_sentence_pair_and_bad_word_id() -> None:
    assert align_labels([None, 0, 0, None, 0, None], [3], label_all_subtokens=False) == [
        -100,
        3,
        -100,
        -100,
        3,
        -100,
    ]
    with pytest.raises(ValueError, match="word 2, but only 2 word labels"):
        align_labels([None, 0, 1, 2, None], [0, 0])


# --- character spans ------------------------------------------------------------------------------


def test_spans() -> None:
    text = "Angela Merkel visited New York City ."
    offsets = [(0, 6), (7, 13), (14, 21), (22, 25), (26, 30), (31, 35), (36, 37)]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    scores = [0.9, 0.8, 0.99, 0.7, 0.6, 0.5, 0.99]
    assert spans(text, offsets, tags, scores) == [
        {"entity": "PER", "start": 0, "end": 13, "text": "Angela Merkel", "score": 0.85},
        {"entity": "LOC", "start": 22, "end": 35, "text": "New York City", "score": 0.6},
    ]
    assert spans(text, offsets, ["O"] * 7, scores) == []
    with pytest.raises(ValueError, match="one of each per word"):
        spans(text, offsets, tags[:-1], scores)
