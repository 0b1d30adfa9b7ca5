"""Stage `validate`: a Great Expectations suite, built from params, run on every split.

A failure writes the report, prints which expectation failed on which column with a few offending
rows, and exits non-zero, so neither `dvc repro` nor the flow runs anything downstream.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pandas as pd

from tunepipe import params as params_mod
from tunepipe import paths
from tunepipe.io import write_json
from tunepipe.params import Params

EXAMPLES = 5


def build_suites(p: Params, train_texts: list[str]) -> dict[str, list[Any]]:
    """Expectations per table: each split, its class counts, and the test split's overlap with train."""
    import great_expectations.expectations as gxe

    v, labels = p.validate, [str(x) for x in p.load.labels]
    columns = ["text", "label"] + (["text_pair"] if p.load.columns.text_pair else [])
    rows: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in columns]
    for col in columns[:1] + columns[2:]:
        rows += [
            gxe.ExpectColumnValuesToNotBeNull(column=col),
            gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=r"^\s*$"),
            gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=v.min_chars, max_value=v.max_chars),
        ]
    rows.append(gxe.ExpectColumnValuesToNotBeNull(column="label"))
    if labels:
        rows.append(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    class_counts = [
        gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=v.min_rows_per_class),
    ]
    if labels:
        class_counts.append(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    leakage = [gxe.ExpectColumnValuesToNotBeInSet(column="text", value_set=train_texts)]
    return {"split": rows, "class_counts": class_counts, "test_vs_train": leakage}


def class_count_table(df: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Rows per declared class (0 for a class that never occurs), as a table GX can check."""
    counts = df["label"].value_counts()
    names = labels or sorted(counts.index)
    return pd.DataFrame({"label": names, "rows": [int(counts.get(n, 0)) for n in names]})


def run_suite(ctx: Any, name: str, expectations: list[Any], df: pd.DataFrame) -> list[dict[str, Any]]:
    import great_expectations as gx

    asset = ctx.data_sources.add_pandas(f"src_{name}").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all")
    # An expectation object belongs to one suite, and the same checks run on every split.
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[copy.copy(e) for e in expectations]))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": df}, result_format="COMPLETE")
    return [_summarise(r, df) for r in result.results]


def _summarise(r: Any, df: pd.DataFrame) -> dict[str, Any]:
    kwargs = r.expectation_config.kwargs
    out: dict[str, Any] = {
        "expectation": r.expectation_config.type,
        "column": kwargs.get("column"),
        "success": bool(r.success),
    }
    bounds = {k: kwargs[k] for k in ("min_value", "max_value", "regex") if kwargs.get(k) is not None}
    if "value_set" in kwargs and len(kwargs["value_set"]) <= 50:
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
    return out


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
    return value


def validate(p: Params, splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Run every suite; returns the report (deterministic, so an unchanged input re-validates the same)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    labels = [str(x) for x in p.load.labels]
    train_texts = sorted(set(splits["train"]["text"].dropna().astype(str)))
    suites = build_suites(p, train_texts)
    report: dict[str, Any] = {"success": True, "splits": {}, "failures": []}
    for split, df in splits.items():
        counts = class_count_table(df, labels)
        checks = run_suite(ctx, split, suites["split"], df)
        checks += [
            dict(c, table="class_counts")
            for c in run_suite(ctx, f"{split}_classes", suites["class_counts"], counts)
        ]
        if split == "test":
            checks += [
                dict(c, table="test_vs_train")
                for c in run_suite(ctx, "test_vs_train", suites["test_vs_train"], df)
            ]
        text_len = df["text"].dropna().astype(str).str.len()
        report["splits"][split] = {
            "rows": len(df),
            "class_counts": dict(zip(counts["label"], counts["rows"], strict=True)),
            "text_chars": {
                "min": int(text_len.min()),
                "median": float(text_len.median()),
                "max": int(text_len.max()),
            }
            if len(text_len)
            else {},
            "checks": checks,
        }
        for check in checks:
            if not check["success"]:
                report["success"] = False
                report["failures"].append(dict(check, split=split))
    return report


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
    for ex in check.get("examples", []):
        row = ex.get("source_row")
        shown = {k: v for k, v in ex.items() if k != "source_row"}
        line += f"\n    source row {row}: {shown}" if row is not None else f"\n    {shown}"
    return line


def main() -> None:
    from tasks.load import read_split_frames

    p = params_mod.read(paths.PARAMS)
    report = validate(p, read_split_frames())
    write_json(paths.VALIDATION_REPORT, report)
    if not report["success"]:
        print(
            f"validate: {len(report['failures'])} expectation(s) failed (report: {paths.VALIDATION_REPORT})",
            file=sys.stderr,
        )
        for check in report["failures"]:
            print("  " + describe_failure(check), file=sys.stderr)
        sys.exit(1)
    print(
        "validate: all expectations met on "
        + ", ".join(f"{s} ({d['rows']} rows)" for s, d in report["splits"].items())
    )


if __name__ == "__main__":
    from tunepipe.stage import run

    run(main)
