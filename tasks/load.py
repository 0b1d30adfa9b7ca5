"""Stage `load`: read the source named in params and write canonical train/validation/test splits."""

from __future__ import annotations

import sys

from tunepipe import catalog, params
from tunepipe.splitting import make_splits
from tunepipe.stage import run


def main() -> None:
    p = params.read(catalog.PARAMS)
    splits, manifest = make_splits(p.load, p.task)
    catalog.write_splits(splits, manifest, catalog.SPLITS)
    # load.overlap: drop changes a split the user supplied: say so every time, not only in the manifest.
    for split, by in manifest.get("overlap_dropped", {}).items():
        for other, count in by.items():
            print(
                f"load: warning: dropped {count} row(s) of {split} ({manifest['source'][split]}) that repeat "
                f"texts of {other} (load.overlap: drop; counts in {catalog.SPLITS}/manifest.json)",
                file=sys.stderr,
            )
    print("load: " + ", ".join(f"{s} {n} rows" for s, n in manifest["rows"].items()))


if __name__ == "__main__":
    run(main)
