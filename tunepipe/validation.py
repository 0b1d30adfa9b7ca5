"""The validate stage as a function: a Great Expectations suite, built from params, run on every
split. The report says which expectation failed on which column, with a few offending rows."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pandas as pd

from tunepipe.params import Params
from tunepipe.pretrained import effective_max_length, load_tokenizer
from tunepipe.splitting import dedupe_key
from tunepipe.tagging import iob_violations, resolve_scheme

EXAMPLES = 5
# Rows per batch: what one tokenizer call or one Great Expectations run holds in memory at once.
BATCH = 20_000
ONLY_IDS = {"truncation": False, "return_attention_mask": False, "return_token_type_ids": False}


def build_suites(
    p: Params, shared: list[str], scheme: str = "none", labels: list[str] | None = None
) -> dict[str, list[Any]]:
    """Expectations per table: each split, its class counts (train against min_rows_per_class,
    validation and test against min_eval_rows_per_class), and the test split's overlap with train.
    `shared`: the test examples that train holds too, the value set the overlap check is run with.
    Great Expectations serialises an expectation's value set each time it reads its configuration
    (thousands of times a run), so a set of every train example cost seconds per batch: at
    100,000 rows, 25 of validate's 47 s. The rows it finds unexpected are the same.
    `labels`: the label set when params declare none (load reads it from the train split).

    Token classification checks a sentence table (lengths) and a word table (tags, IOB form)."""
    import great_expectations.expectations as gxe

    v = p.validate
    labels = [str(x) for x in p.load.labels] or list(labels or [])
    leakage = [gxe.ExpectColumnValuesToNotBeInSet(column="example", value_set=shared)]
    if p.task == "token_classification":
        sentences = [gxe.ExpectColumnToExist(column=c) for c in ("tokens", "tags")] + [
            gxe.ExpectColumnValuesToNotBeNull(column="tokens"),
            gxe.ExpectColumnValuesToNotBeNull(column="tags"),
            gxe.ExpectColumnValuesToBeBetween(column="words", min_value=1),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="words", column_B="tag_count"),
        ]
        words = [
            gxe.ExpectColumnValuesToNotMatchRegex(column="token", regex=r"^\s*$"),
            gxe.ExpectColumnValuesToNotBeNull(column="tag"),
        ]
        if labels:
            words.append(gxe.ExpectColumnValuesToBeInSet(column="tag", value_set=labels))
        if scheme != "none":
            words.append(gxe.ExpectColumnValuesToBeInSet(column="well_formed", value_set=[True]))
        return {"split": sentences, "words": words, "test_vs_train": leakage}
    columns = ["text", "label"] + (["text_pair"] if p.load.columns.text_pair else [])
    rows: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in columns]
    for col in columns[:1] + columns[2:]:
        rows += [
            # A number or a list is not a text: the tokenizer would fail on it after "all met".
            gxe.ExpectColumnValuesToBeOfType(column=col, type_="str"),
            gxe.ExpectColumnValuesToNotBeNull(column=col),
            gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=r"^\s*$"),
            gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=v.min_chars, max_value=v.max_chars),
        ]
    rows.append(gxe.ExpectColumnValuesToNotBeNull(column="label"))
    if p.task == "regression":
        if v.target_range:
            low, high = v.target_range
            rows.append(gxe.ExpectColumnValuesToBeBetween(column="label", min_value=low, max_value=high))
        return {"split": rows, "test_vs_train": leakage}
    if labels:
        rows.append(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    suites = {"split": rows, "test_vs_train": leakage}
    minimums = {"class_counts": v.min_rows_per_class, "eval_class_counts": v.eval_minimum}
    for name, minimum in minimums.items():
        suites[name] = [gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=minimum)]
        if labels:
            suites[name].append(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    return suites


def half_width(n: int, share: float = 0.5, z: float = 1.96) -> float:
    """Half the width of a 95% (normal-approximation binomial) interval of a share measured on n
    rows, at its widest (50%) by default: how far an accuracy or a recall on n rows may be off."""
    return z * math.sqrt(share * (1 - share) / n) if n else 1.0


def small_class_warnings(split: str, counts: dict[str, int], rows: int, p: Params) -> list[str]:
    """Evaluation-split classes below validate.min_rows_per_class (a train minimum): not a failure,
    but their scores are uncertain, and by how much is said."""
    low = {k: n for k, n in counts.items() if n < p.validate.min_rows_per_class}
    if not low:
        return []
    shown = ", ".join(f"{k!r} {n} (recall ±{half_width(n):.1%})" for k, n in list(low.items())[:10])
    return [
        f"{split}: {len(low)} class(es) below validate.min_rows_per_class ({p.validate.min_rows_per_class}, "
        f"which applies to train): {shown}; accuracy on its {rows} rows is known to ±{half_width(rows):.1%} "
        "(95% binomial interval half-width at 50%); validate.min_eval_rows_per_class "
        f"({p.validate.eval_minimum}) is the evaluation splits' minimum"
    ]


def sentence_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["source_row"]].copy()
    out["tokens"] = df["tokens"].map(lambda t: None if t is None else " ".join(t))
    out["tags"] = df["tags"].map(lambda t: None if t is None else " ".join(t))
    out["words"] = df["tokens"].map(lambda t: 0 if t is None else len(t))
    out["tag_count"] = df["tags"].map(lambda t: 0 if t is None else len(t))
    return out


def word_table(df: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """One row per word, with the file line where known and whether its IOB tag may follow the one before."""
    rows = []
    for sentence in df.itertuples(index=False):
        tokens, tags = sentence.tokens, sentence.tags
        if tokens is None or tags is None or len(tokens) != len(tags):
            continue  # reported by the sentence table
        bad = set(iob_violations(list(tags), scheme)) if scheme != "none" else set()
        lines = sentence.lines if "lines" in df.columns else None
        for i, (token, tag) in enumerate(zip(tokens, tags, strict=True)):
            rows.append(
                {
                    "source_row": sentence.source_row,
                    "word": i + 1,
                    "line": None if lines is None else int(lines[i]),
                    "token": token,
                    "tag": tag,
                    "previous_tag": tags[i - 1] if i else None,
                    "well_formed": i not in bad,
                }
            )
    columns = ["source_row", "word", "line", "token", "tag", "previous_tag", "well_formed"]
    return pd.DataFrame(rows, columns=columns)


def class_count_table(df: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Rows per declared class (0 for a class that never occurs), as a table GX can check."""
    counts = df["label"].value_counts()
    names = labels or sorted(counts.index)
    return pd.DataFrame({"label": names, "rows": [int(counts.get(n, 0)) for n in names]})


def run_suite(ctx: Any, name: str, expectations: list[Any], df: pd.DataFrame) -> list[dict[str, Any]]:
    """The suite's results on `df`, run BATCH rows at a time and merged: Great Expectations keeps
    per-row maps and unexpected lists for every expectation of a run, so one run over a whole
    split would take memory in proportion to its rows."""
    import great_expectations as gx

    asset = ctx.data_sources.add_pandas(f"src_{name}").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all")
    # An expectation object belongs to one suite, and the same checks run on every split.
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[copy.copy(e) for e in expectations]))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    parts: list[list[dict[str, Any]]] = []
    for start in range(0, max(len(df), 1), BATCH):
        part = df.iloc[start : start + BATCH].reset_index(drop=True)
        result = definition.run(batch_parameters={"dataframe": part}, result_format="COMPLETE")
        parts.append([_summarise(r, part) for r in result.results])
    return [_merge([p[i] for p in parts]) for i in range(len(parts[0]))]


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One expectation's summary over all batches, as one run over the whole table would give:
    counts added up, the first EXAMPLES offending rows in table order."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    out = {k: first[k] for k in ("expectation", "column")}
    out["success"] = all(p["success"] for p in parts)
    if "expected" in first:
        out["expected"] = first["expected"]
    if all("unexpected_count" in p for p in parts):
        out["unexpected_count"] = sum(p["unexpected_count"] for p in parts)
        out["element_count"] = sum(p["element_count"] for p in parts)
    examples = [e for p in parts for e in p.get("examples", [])][:EXAMPLES]
    if examples:
        out["examples"] = examples
    problem = next((p["problem"] for p in parts if "problem" in p), None)
    if problem is not None and not examples:
        out["problem"] = problem
    return out


def _summarise(r: Any, df: pd.DataFrame) -> dict[str, Any]:
    kwargs = r.expectation_config.kwargs
    out: dict[str, Any] = {
        "expectation": r.expectation_config.type,
        "column": kwargs.get("column"),
        "success": bool(r.success),
    }
    bounds = {k: kwargs[k] for k in ("min_value", "max_value", "regex") if kwargs.get(k) is not None}
    if r.expectation_config.type == "expect_column_values_to_be_in_set" and len(kwargs["value_set"]) <= 50:
        bounds["value_set"] = list(kwargs["value_set"])
    if bounds:
        out["expected"] = bounds
    result = r.result or {}
    if "unexpected_count" in result:
        out["unexpected_count"] = int(result["unexpected_count"])
        out["element_count"] = int(result.get("element_count", len(df)))
    if not r.success:
        idx = list(result.get("unexpected_index_list") or [])[:EXAMPLES]
        examples = []
        for i in idx:
            row = df.iloc[int(i)]
            example = {k: _plain(row[k]) for k in df.columns if k not in ("group",)}
            examples.append(example)
        if examples:
            out["examples"] = examples
        if not examples and not result:
            out["problem"] = f"column {out['column']!r} does not exist"
        elif not examples and r.expectation_config.type == "expect_column_values_to_be_of_type":
            # A whole-column verdict (a column of numbers is not of type str): every row is concerned.
            out["problem"] = f"the column holds {result.get('observed_value')} values in every row"
    return out


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
    return value


def token_lengths(tok: Any, task: str, df: pd.DataFrame) -> np.ndarray:
    """Each row's token count without truncation. Only the counts are kept: the tokenizer's
    encodings (ids, offsets, token strings) take several KB a row, too much for a whole split."""
    if task == "token_classification":
        rows = [list(t) for t in df["tokens"] if t is not None and len(t)]
        enc = tok(rows, is_split_into_words=True, **ONLY_IDS) if rows else {"input_ids": []}
    else:
        texts = df["text"].fillna("").astype(str).tolist()
        pairs = df["text_pair"].fillna("").astype(str).tolist() if "text_pair" in df.columns else None
        enc = tok(texts, pairs, **ONLY_IDS) if texts else {"input_ids": []}
    return np.array([len(ids) for ids in enc["input_ids"]], dtype=int)


def truncation_report(p: Params, splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """How many examples per split the tokenizer will cut at tokenize.max_length: what a user
    loses from long texts (IMDB-style reviews) is visible before any training starts."""
    tok = load_tokenizer(p)
    max_length = effective_max_length(p, tok)
    out: dict[str, Any] = {"max_length": max_length}
    for split, df in splits.items():
        lengths = np.concatenate(
            [np.zeros(0, dtype=int)]
            + [
                token_lengths(tok, p.task, df.iloc[start : start + BATCH])
                for start in range(0, len(df), BATCH)
            ]
        )
        cut = int((lengths > max_length).sum())
        tokens, tokens_cut = int(lengths.sum()), int(np.maximum(lengths - max_length, 0).sum())
        out[split] = {
            "examples": len(lengths),
            "truncated": cut,
            "share": round(cut / len(lengths), 4) if len(lengths) else 0.0,
            "tokens": tokens,
            "tokens_cut": tokens_cut,
            "tokens_share": round(tokens_cut / tokens, 4) if tokens else 0.0,
            "tokens_median": float(np.median(lengths)) if len(lengths) else 0.0,
            "tokens_max": int(lengths.max()) if len(lengths) else 0,
        }
    return out


def validate(
    p: Params, splits: dict[str, pd.DataFrame], labels: list[str] | None = None
) -> dict[str, Any]:
    """Run every suite; returns the report (deterministic, so an unchanged input re-validates the same).
    `labels`: the train split's labels that load recorded, used when load.labels declares none."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    labels = [str(x) for x in p.load.labels] or list(labels or [])
    tokens = p.task == "token_classification"
    scheme = resolve_scheme(p.load.tag_scheme, splits["train"]["tags"]) if tokens else None
    train_keys = set(dedupe_key(splits["train"]).dropna().astype(str))
    test_keys = dedupe_key(splits["test"]).astype(str) if "test" in splits else pd.Series(dtype=str)
    suites = build_suites(p, sorted(set(test_keys) & train_keys), scheme or "none", labels)
    report: dict[str, Any] = {"success": True, "task": p.task, "splits": {}, "failures": [], "warnings": []}
    if labels and not p.load.labels:
        report["labels_from_train"] = labels
    if scheme:
        report["tag_scheme"] = scheme
    for split, df in splits.items():
        summary: dict[str, Any] = {"rows": len(df)}
        if tokens:
            checks = run_suite(ctx, split, suites["split"], sentence_table(df))
            words = word_table(df, scheme or "none")
            checks += [
                dict(c, table="words") for c in run_suite(ctx, f"{split}_words", suites["words"], words)
            ]
            summary["words"] = len(words)
            summary["tag_counts"] = {
                str(k): int(v) for k, v in words["tag"].value_counts().sort_index().items()
            }
        else:
            checks = run_suite(ctx, split, suites["split"], df)
            if p.task == "regression":
                target = pd.to_numeric(df["label"], errors="coerce").dropna()
                summary["target"] = (
                    {"min": float(target.min()), "mean": float(target.mean()), "max": float(target.max())}
                    if len(target)
                    else {}
                )
            else:
                counts = class_count_table(df, labels)
                suite = suites["class_counts" if split == "train" else "eval_class_counts"]
                checks += [
                    dict(c, table="class_counts") for c in run_suite(ctx, f"{split}_classes", suite, counts)
                ]
                summary["class_counts"] = dict(zip(counts["label"], counts["rows"], strict=True))
                if split != "train":
                    report["warnings"] += small_class_warnings(split, summary["class_counts"], len(df), p)
            text_len = df["text"].dropna().astype(str).str.len()
            if len(text_len):
                summary["text_chars"] = {
                    "min": int(text_len.min()),
                    "median": float(text_len.median()),
                    "max": int(text_len.max()),
                }
        if split == "test":
            keys = pd.DataFrame({"example": test_keys, "source_row": df["source_row"]})
            checks += [
                dict(c, table="test_vs_train")
                for c in run_suite(ctx, "test_vs_train", suites["test_vs_train"], keys)
            ]
        summary["checks"] = checks
        report["splits"][split] = summary
        for check in checks:
            if not check["success"]:
                fix = fix_for(check, p, split)
                if fix:
                    check["fix"] = fix
                in_set = check["expectation"] == "expect_column_values_to_be_in_set"
                if "labels_from_train" in report and in_set and check["column"] in ("label", "tag"):
                    check["problem"] = (
                        "labels were read from the train split (load.labels is not set), and these never "
                        "occur in train; declare them in load.labels and add train rows for them"
                    )
                report["success"] = False
                report["failures"].append(dict(check, split=split))
    if report["success"]:
        # Only data that passed is worth tokenizing; a share above the limit is a failure of its own.
        report["truncation"] = truncation_report(p, splits)
        limit = p.validate.max_truncated_share
        for split, t in report["truncation"].items():
            if split != "max_length" and limit is not None and t["share"] > limit:
                report["success"] = False
                report["failures"].append(
                    {
                        "expectation": "truncated_share_at_most",
                        "column": "text" if not tokens else "tokens",
                        "split": split,
                        "success": False,
                        "expected": {"max_value": limit},
                        "problem": f"{t['truncated']} of {t['examples']} examples ({t['share']:.1%}) "
                        f"are longer than {report['truncation']['max_length']} tokens, more than "
                        f"validate.max_truncated_share ({limit:.1%}); raise tokenize.max_length or "
                        "validate.max_truncated_share",
                    }
                )
    return report


def fix_for(check: dict[str, Any], p: Params, split: str) -> str | None:
    """The params key that settles a failed expectation, where one does (a bad row is fixed in the
    source instead)."""
    kind, column, table = check["expectation"], check.get("column"), check.get("table")
    if table == "class_counts" and kind == "expect_column_values_to_be_between":
        if split == "train":
            return (
                f"validate.min_rows_per_class ({p.validate.min_rows_per_class}) is the train minimum: "
                "add rows, lower it, or drop the class with load.drop_labels"
            )
        minimum = p.validate.eval_minimum
        return (
            f"validate.min_eval_rows_per_class ({minimum}) is the {split} minimum: "
            f"add rows, lower it, or raise load.split.{split}"
        )
    if kind == "expect_column_value_lengths_to_be_between":
        return "texts outside validate.min_chars / validate.max_chars: fix the rows or change those keys"
    if kind == "expect_column_values_to_be_in_set" and column in ("label", "tag") and p.load.labels:
        return "labels outside load.labels: add them there" + (
            ", or drop their rows with load.drop_labels" if p.task == "sequence_classification" else ""
        )
    if kind == "expect_column_values_to_be_between" and column == "label" and p.task == "regression":
        return "targets outside validate.target_range: fix the rows, widen it, or set it to null"
    if column == "well_formed":
        return "ill-formed IOB tags: fix them, or set load.tag_scheme: none to read the tags as plain labels"
    return None


def describe_failure(check: dict[str, Any]) -> str:
    """One readable paragraph per failed expectation: which, where, how many, and examples."""
    table = check.get("table")
    where = f"split {check['split']!r}" + (f" ({table})" if table else "")
    line = f"{check['expectation']} failed on column {check['column']!r} in {where}"
    if "unexpected_count" in check:
        line += f": {check['unexpected_count']} of {check['element_count']} rows unexpected"
    if "expected" in check:
        line += f"; expected {check['expected']}"
    if "problem" in check:
        line += f"; {check['problem']}"
    if "fix" in check:
        line += f" ({check['fix']})"
    for ex in check.get("examples", []):
        row, file_line = ex.get("source_row"), ex.get("line")
        shown = {k: v for k, v in ex.items() if k not in ("source_row", "line") and v is not None}
        if file_line is not None:
            line += f"\n    line {file_line}: {shown}"
        elif row is not None:
            line += f"\n    source row {row}: {shown}"
        else:
            line += f"\n    {shown}"
    return line
