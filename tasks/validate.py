"""Stage `validate`: Great Expectations checks on every split; a failure writes the report, names
the failed expectations with offending rows, and exits non-zero so nothing downstream runs."""

from __future__ import annotations

import sys

from tunepipe import catalog, params
from tunepipe.io import write_json
from tunepipe.stage import run
from tunepipe.validation import describe_failure, validate


def main() -> None:
    p = params.read(catalog.PARAMS)
    # Without load.labels, the label set load read from the train split (data/splits/manifest.json).
    labels = (catalog.read_manifest().get("labels") or {}).get("names")
    report = validate(p, catalog.read_splits(), labels)
    write_json(catalog.VALIDATION_REPORT, report)
    for warning in report.get("warnings", []):
        print(f"validate: warning: {warning}", file=sys.stderr)
    if not report["success"]:
        print(
            f"error: validate: {len(report['failures'])} expectation(s) failed "
            f"(report: {catalog.VALIDATION_REPORT})",
            file=sys.stderr,
        )
        for check in report["failures"]:
            print("  " + describe_failure(check), file=sys.stderr)
        sys.exit(1)
    print(
        "validate: all expectations met on "
        + ", ".join(f"{s} ({d['rows']} rows)" for s, d in report["splits"].items())
    )
    cut = report["truncation"]
    print(
        f"validate: longer than {cut['max_length']} tokens (truncated): "
        + ", ".join(f"{s} {cut[s]['truncated']} ({cut[s]['share']:.1%})" for s in report["splits"])
    )


if __name__ == "__main__":
    run(main)
