"""Stage `tokenize`: the splits as token ids, with labels.json (label names in id order)."""

from __future__ import annotations

from tunepipe import catalog, params
from tunepipe.stage import run
from tunepipe.tokenization import tokenize


def main() -> None:
    p = params.read(catalog.PARAMS)
    dsd, info = tokenize(p, catalog.read_splits())
    catalog.write_tokenized(dsd, info, catalog.TOKENIZED)
    print(f"tokenize: {info['rows']} examples, {len(info['labels'])} labels, max_length {info['max_length']}")


if __name__ == "__main__":
    run(main)
