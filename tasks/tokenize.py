"""Stage `tokenize`: each split as token ids in its own output, with labels.json (label names in id
order)."""

from __future__ import annotations

import sys

from tunepipe import catalog, params
from tunepipe.io import read_json
from tunepipe.stage import run
from tunepipe.tokenization import tokenize, truncation_lines


def main() -> None:
    p = params.read(catalog.PARAMS)
    dsd, info, counts = tokenize(p, catalog.read_splits())
    catalog.write_tokenized(dsd, info, catalog.TOKENIZED)
    target = "a numeric target" if p.task == "regression" else f"{len(info['labels'])} labels"
    print(f"tokenize: {counts['rows']} examples, {target}, max_length {info['max_length']}")
    if "sentences_cut" in counts:
        print(f"tokenize: sentences cut at max_length: {counts['sentences_cut']}")
    # Measured once, by validate (a dependency of this stage), on the same splits and max_length.
    report = read_json(catalog.VALIDATION_REPORT) if catalog.VALIDATION_REPORT.is_file() else {}
    if truncation := report.get("truncation"):
        line, warnings = truncation_lines(truncation, p.validate.max_truncated_share)
        print(line)
        for warning in warnings:
            print(warning, file=sys.stderr)


if __name__ == "__main__":
    run(main)
