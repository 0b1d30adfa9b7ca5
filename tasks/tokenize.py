"""Stage `tokenize`: each split as token ids in its own output, with labels.json (label names in id
order)."""

from __future__ import annotations

from tunepipe import catalog, params
from tunepipe.stage import run
from tunepipe.tokenization import tokenize


def main() -> None:
    p = params.read(catalog.PARAMS)
    dsd, info, counts = tokenize(p, catalog.read_splits())
    catalog.write_tokenized(dsd, info, catalog.TOKENIZED)
    print(
        f"tokenize: {counts['rows']} examples, {len(info['labels'])} labels, max_length {info['max_length']}"
    )
    if "sentences_cut" in counts:
        print(f"tokenize: sentences cut at max_length: {counts['sentences_cut']}")


if __name__ == "__main__":
    run(main)
