"""Stage `load`: read the source named in params and write canonical train/validation/test splits."""

from __future__ import annotations

import sys

from tunepipe import catalog, params
from tunepipe.changes import describe_change
from tunepipe.splitting import make_splits
from tunepipe.stage import run

# Changes to a supplied evaluation split (or rows kept that validate will refuse) are warnings.
WARNINGS = ("overlap_dropped", "empty_texts_kept", "missing_labels_kept")


def main() -> None:
    p = params.read(catalog.PARAMS)
    splits, manifest = make_splits(p.load, p.task)
    catalog.write_splits(splits, manifest, catalog.SPLITS)
    repaired = manifest.get("tags_repaired") or {}
    if sum(repaired.values()):
        print(
            f"load: repaired {sum(repaired.values())} IOB2 tag(s) that opened a chunk with I-X into B-X "
            "(load.conll.tag_repair: fix): " + ", ".join(f"{s} {n}" for s, n in repaired.items())
        )
    # Every change to the user's rows, every time, not only in the manifest (and the run report).
    for change in manifest["changes"]:
        warning = change["change"] in WARNINGS
        print(
            f"load: {'warning: ' if warning else ''}{describe_change(change)}",
            file=sys.stderr if warning else sys.stdout,
        )
    labels = manifest.get("labels")
    if labels and labels["from"] == "train":
        print(
            f"load: labels read from the train split ({len(labels['names'])}, in id order): "
            + ", ".join(labels["names"][:50])
            + (" ..." if len(labels["names"]) > 50 else "")
            + " (declare load.labels to fix them)"
        )
    for path, added in manifest.get("incoming", {}).items():
        print(f"load: added {added['rows']} row(s) of {path} (tunepipe ingest) to the source's train rows")
    print("load: " + ", ".join(f"{s} {n} rows" for s, n in manifest["rows"].items()))


if __name__ == "__main__":
    run(main)
