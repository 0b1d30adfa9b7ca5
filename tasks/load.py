"""Stage `load`: read the source named in params and write canonical train/validation/test splits."""

from __future__ import annotations

from tunepipe import catalog, params
from tunepipe.splitting import make_splits
from tunepipe.stage import run


def main() -> None:
    p = params.read(catalog.PARAMS)
    splits, manifest = make_splits(p.load, p.task)
    catalog.write_splits(splits, manifest, catalog.SPLITS)
    print("load: " + ", ".join(f"{s} {n} rows" for s, n in manifest["rows"].items()))


if __name__ == "__main__":
    run(main)
