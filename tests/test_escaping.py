"""User-derived text (labels, names, paths, parameter values) in every rendered output: the model
card, Prefect's markdown and table artifacts, the HTML run report. Each is parsed as its reader
would (Markdown with raw HTML allowed, as model hubs render cards; HTML) and must hold no tag, link
or image the text brought, and show the text as written."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import ModelCard
from markdown_it import MarkdownIt

from tunepipe import markup as md
from tunepipe import model_card, params, report
from tunepipe.evaluation import score
from tunepipe.params import Threshold

pytestmark = pytest.mark.unit

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[click](https://evil.example/)",
    "![pixel](https://evil.example/p.png)",
    "<https://evil.example/>",
    "a | b",
    "`tick` and ``two``",
    "*bold* _under_ ~~strike~~ **x**",
    "&lt;entity&gt; &amp; &#60;b&#62;",
    "back\\slash \\| \\<b\\> \\[x](y)",
    "snake_case and _x_ and __y__",
    "$\\frac{$ costs $5",
]
MULTILINE = "multi\n# heading\n<b>x</b>\n| c | d |"
LABELS = ["plain", *HOSTILE[:5], "a | b", "$\\frac{$"]
FORBIDDEN = {"html_block", "html_inline", "link_open", "image"}


def parser() -> MarkdownIt:
    """CommonMark with raw HTML on (what hubs render) and GFM tables."""
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def check_markdown(markdown: str) -> list[str]:
    """The text of every inline run (entities and escapes resolved); fails on any token a user's
    text could have made: raw HTML, a link, an image, or a table row with extra cells."""
    texts, cells, header = [], 0, None
    for token in parser().parse(markdown):
        if token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            header = cells if header is None else header
            assert cells == header, markdown
            cells = 0
        elif token.type == "table_close":
            header = None
        assert token.type not in FORBIDDEN, (token, markdown)
        for child in token.children or []:
            assert child.type not in FORBIDDEN, (child, markdown)
        if token.type == "inline":
            shown = [c.content for c in token.children or [] if c.type in ("text", "code_inline")]
            texts.append("".join(shown))
    html = parser().render(markdown)
    assert "<img" not in html and "<script" not in html and "<a " not in html, html
    return texts


def shows(texts: list[str], value: str) -> bool:
    return any(value in t for t in texts)


@pytest.mark.parametrize("value", [*HOSTILE, MULTILINE])
def test_text_and_code_show_the_value_and_nothing_else(value: str) -> None:
    line = " ".join(value.splitlines())
    for rendered in (md.text(value), md.code(value)):
        texts = check_markdown(f"Before {rendered} after.")
        assert texts == [f"Before {line} after."]
    texts = check_markdown(md.table(["name", "code"], [[value, md.code(value)], ["x", 1.5]]))
    assert texts == ["name", "code", line, line, "x", "1.5000"]


def test_names_that_cannot_form_markup_read_as_written() -> None:
    assert md.text("learning_rate f1_macro sequence_classification") == (
        "learning_rate f1_macro sequence_classification"
    )
    assert md.code("a`b") == "``a`b``" and md.code("`x") == "`` `x ``"


def hostile_card() -> str:
    p = params.parse({"task": "sequence_classification", "load": {"source": "data/raw/reviews.csv"}})
    splits = {s: {"rows": 10, "md5": f"{s}.dir", "at_length_limit": 0.1} for s in ("train", "validation")}
    run = {
        "device": {"device": "cpu", "precision": "fp32"},
        "parameters": {"total": 100, "trainable": 100, "frozen": 0},
        "class_weights": {label: 1.0 for label in LABELS},
        "train_examples": 80,
        "batch": {"per_device": 8, "processes": 1, "gradient_accumulation_steps": 1, "global": 8},
        "epochs_run": 2.0,
        "global_step": 20,
        "max_steps": 30,
        "stopped_early": False,
        "best_metric": {"accuracy": 0.9},
        "best_checkpoint": "checkpoint-10",
    }
    facts = model_card.train_facts(p, {"labels": LABELS, "max_length": 64}, splits, run)
    facts["data"]["source"] = {"train": HOSTILE[2], "test": HOSTILE[0]}
    facts["data"]["split"]["group_by"] = HOSTILE[5]
    facts["base_model"] = {"model": {HOSTILE[0]: "ab" * 32}}
    facts["validation"] = {"splits": {"train": {"class_counts": {label: 3 for label in LABELS}}}}
    n = len(LABELS)
    refs = np.arange(n * 2) % n
    logits = np.eye(n)[(refs + 1) % n]
    evaluation = score(refs, logits, LABELS, {"accuracy": Threshold(min=0.5)})
    lineage = {"version": HOSTILE[3], "tag": HOSTILE[1], "registered commit": "a" * 40, "reason": MULTILINE}
    return model_card.render(facts, HOSTILE[0], evaluation, lineage)


def test_the_model_card_escapes_labels_names_and_lineage() -> None:
    card = ModelCard(hostile_card())
    texts = check_markdown(card.text)
    for label in LABELS:
        assert shows(texts, label), label
    assert shows(texts, " ".join(MULTILINE.splitlines()))
    assert "| accuracy | >= 0.5 |" in card.text  # the program's own markup stays readable
    assert card.data.to_dict()["tunepipe"]["labels"] == LABELS  # the facts keep the values as they are


def test_prefect_artifacts_escape_what_they_show() -> None:
    from flows.pipeline import metrics_markdown, promotion_markdown, report_markdown, validation_rows
    from flows.search import best_markdown, trial_rows

    n = len(LABELS)
    refs = np.arange(n * 2) % n
    evaluation = score(refs, np.eye(n)[refs], LABELS, {"accuracy": Threshold(min=0.5)})
    texts = check_markdown(metrics_markdown(evaluation))
    assert all(shows(texts, label) for label in LABELS)

    decision = {
        "promote": False,
        "reason": HOSTILE[0],
        "metric": HOSTILE[5],
        "stage": HOSTILE[2],
        "champion": None,
        "challenger": {"version": HOSTILE[3], "score": 0.5},
    }
    texts = check_markdown(promotion_markdown(decision))
    assert all(shows(texts, v) for v in (HOSTILE[0], HOSTILE[5], HOSTILE[2], HOSTILE[3]))
    champion = {"version": HOSTILE[1], "score": 0.4, "scored": "now"}
    numbers = {"improvement": 0.1, "confidence": 0.95, "low": 0.0, "high": 0.2, "resamples": 10}
    decision |= numbers | {"champion": champion, "examples": 5, "seed": 0, "min_delta": 0.0}
    decision |= {"require_significant": HOSTILE[7]}
    texts = check_markdown(promotion_markdown(decision))
    assert shows(texts, HOSTILE[1]) and shows(texts, HOSTILE[7].lower())

    texts = check_markdown(report_markdown(Path("/tmp") / "a (b) [c] <d>" / "report.html", HOSTILE[2]))
    assert shows(texts, HOSTILE[2]) and shows(texts, "/tmp/a (b) [c] <d>/report.html")

    study: dict[str, Any] = {
        "study_name": HOSTILE[0],
        "sampler": HOSTILE[1],
        "storage": "sqlite:///" + HOSTILE[6],
        "metric": HOSTILE[5],
        "direction": "maximize",
        "trials": {"COMPLETE": 1},
        "best_trial": 0,
        "best_value": 0.5,
        "best_model": HOSTILE[3],
        "best_params": {"optim": HOSTILE[2], "lr": 0.001},
    }
    texts = check_markdown(best_markdown(study))
    assert all(shows(texts, v) for v in (HOSTILE[0], HOSTILE[1], HOSTILE[5], HOSTILE[3], HOSTILE[2]))

    # Table artifacts: Prefect's UI renders each text cell as Markdown.
    validation = {
        "splits": {"train": {"rows": 4, "class_counts": {LABELS[1]: 4}, "checks": [{"success": True}]}},
        "truncation": {},
    }
    trials = [{"number": 0, "params_optim": HOSTILE[2], "state": "COMPLETE", "value": None}]
    for row in [*validation_rows(validation), *trial_rows(trials)]:
        for value in row.values():
            if isinstance(value, str):
                check_markdown(value)
    assert trial_rows(trials)[0]["value"] is None and validation_rows(validation)[0]["rows"] == 4


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs |= {name for name, _ in attrs}


def test_the_html_report_escapes_labels_texts_and_lineage() -> None:
    n = len(LABELS)
    refs = np.arange(n * 2) % n
    evaluation = score(refs, np.eye(n)[(refs + 1) % n], LABELS, {"accuracy": Threshold(min=0.5)})
    facts = {
        "title": HOSTILE[1],
        "task": "sequence_classification",
        "metrics": evaluation["metrics"],
        "thresholds": evaluation["thresholds"],
        "passed": evaluation["passed"],
        "per_class": evaluation["per_class"],
        "confusion": evaluation["confusion_matrix"],
        "validation": {"success": True, "splits": {"train": {"rows": 4, "class_counts": {HOSTILE[0]: 4}}}},
        "mistakes": {
            "columns": ["source row", "text", "actual", "predicted", "confidence"],
            "rows": [[1, HOSTILE[1], HOSTILE[0], LABELS[-1], "0.9"]],
            "order": "highest confidence first",
        },
        "registered": True,
        "promotion": {"promote": False, "reason": HOSTILE[0], "metric": HOSTILE[5], "stage": HOSTILE[1],
                      "champion": None, "challenger": {"version": HOSTILE[0], "score": 0.5}},
        "lineage": [["data source", HOSTILE[1]]],
    }
    page = report.render(facts)
    tags = Tags()
    tags.feed(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "b", "div", "img",
               "table", "thead", "tbody", "tr", "th", "td"}
    assert tags.tags <= allowed and "onerror" not in tags.attrs and "script" not in tags.tags
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_drift_artifact_escapes_the_production_tag() -> None:
    import pandas as pd

    from flows.pipeline import drift_markdown
    from tunepipe import drift

    frame = pd.DataFrame({"text": ["a b", "c d e"], "label": LABELS[:2]})
    found = drift.statistics(frame, frame, frame.assign(label=LABELS[1]), "sequence_classification")
    found["prod"] = {"version": HOSTILE[3], "tag": HOSTILE[1]}
    score = {"recorded": 0.5, "on_new_rows": 0.4, "rows": 2, "drop": 0.1}
    found["score"] = score | {"metric": HOSTILE[5], "scored": HOSTILE[0]}
    texts = check_markdown(drift_markdown(found))
    assert shows(texts, HOSTILE[1]) and any(HOSTILE[5] in t for t in texts)
