"""Two registered versions side by side (`tunepipe compare a b`).

Params and metrics come from DVC's own diffs at the two tags (`dvc params diff`, `dvc metrics
diff`), so they read exactly what each tagged commit holds; data and model hashes come from the
two tags' dvc.lock files.

Each version's metrics are its own evaluate run's, on its own test split: when the two tokenized
test splits differ, their difference is not a comparison on the same rows, and the report says
so. The same-rows comparison is the promotion decision recorded at registration (the champion
scored on the challenger's test rows): shown when one version's decision was made against the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunepipe import catalog, dvcrepo, registry
from tunepipe.dvcrepo import lock_outputs, read_lock
from tunepipe.errors import PipelineError
from tunepipe.metrics import is_number
from tunepipe.report import promotion_rows
from tunepipe.version import Tag


def compare(root: Path, name: str, a: str, b: str) -> dict[str, Any]:
    """{a, b, params: {file: {key: {old, new}}}, metrics: {file: {key: {old, new, diff}}},
    outputs: {path: {a, b, same}}}: params that differ, every metric, every output's hash."""
    root = Path(root).resolve()
    tag_a, tag_b = registry.registered_tag(root, name, a), registry.registered_tag(root, name, b)
    with dvcrepo.open_repo(root) as repo:
        params = repo.params.diff(a_rev=tag_a, b_rev=tag_b)
        metrics = repo.metrics.diff(a_rev=tag_a, b_rev=tag_b, all=True)
    for what, result in (("params", params), ("metrics", metrics)):
        if result.get("errors"):
            raise PipelineError(f"DVC could not read the {what} of {tag_a} or {tag_b}: {result['errors']}")
    outs_a, outs_b = lock_outputs(read_lock(root, tag_a)), lock_outputs(read_lock(root, tag_b))
    outputs = {}
    for path in sorted(set(outs_a) | set(outs_b)):
        md5_a, md5_b = (outs_a.get(path) or {}).get("md5"), (outs_b.get(path) or {}).get("md5")
        outputs[path] = {"a": md5_a, "b": md5_b, "same": md5_a == md5_b}
    test = str(catalog.tokenized_split("test"))
    split_a, split_b = (outs_a.get(test) or {}).get("md5"), (outs_b.get(test) or {}).get("md5")
    version_a, version_b = Tag.parse(tag_a).version, Tag.parse(tag_b).version
    decisions = {v: _decision(root, name, t) for v, t in ((version_a, tag_a), (version_b, tag_b))}
    return {
        "a": tag_a,
        "b": tag_b,
        "params": params.get("diff", {}),
        "metrics": metrics.get("diff", {}),
        "outputs": outputs,
        "test_split": {"path": test, "a": split_a, "b": split_b, "same": split_a == split_b},
        "promotion": decisions,
        "same_rows": _same_rows(decisions, version_a, version_b),
    }


def _decision(root: Path, name: str, tag: str) -> dict[str, Any] | None:
    """The promotion decision a version's lineage record holds (None: registered without the flow)."""
    if not registry.has_lineage(root, tag):
        return None
    return registry.read_lineage(root, name, Tag.parse(tag).version).get("promotion")


def _same_rows(decisions: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    """The two versions scored on the same rows: a recorded decision of one made against the other."""
    for challenger, champion in ((b, a), (a, b)):
        d = decisions.get(challenger)
        if d and (d.get("champion") or {}).get("version") == champion:
            return {
                "challenger": challenger,
                "champion": champion,
                "metric": d["metric"],
                "challenger_score": d["challenger"]["score"],
                "champion_score": d["champion"]["score"],
                "improvement": d["improvement"],
                "low": d["low"],
                "high": d["high"],
                "confidence": d["confidence"],
                "rows": promotion_rows(d),
                "promote": d["promote"],
                "stage": d["stage"],
            }
    return None


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _param(value: Any) -> str:
    """Params as written (a learning rate of 1e-05 must not print as 0.0000)."""
    return "-" if value is None else str(value)


def _change(entry: dict[str, Any]) -> str:
    diff = entry.get("diff")
    if is_number(diff):
        return f"{diff:+.4f}" if isinstance(diff, float) else f"{diff:+d}"
    return "" if entry.get("old") == entry.get("new") else "changed"


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render(result: dict[str, Any]) -> str:
    """The comparison as a text report: params, metrics, then data and model hashes."""
    a, b = result["a"], result["b"]
    va, vb = Tag.parse(a).version, Tag.parse(b).version
    lines = [f"{a} vs {b}", ""]
    changed = [(f, k, e) for f, keys in result["params"].items() for k, e in sorted(keys.items())]
    if changed:
        lines.append("params that differ")
        shown = [
            (k if f == "params.yaml" else f"{f}:{k}", _param(e.get("old")), _param(e.get("new")))
            for f, k, e in changed
        ]
        lines += _table([("", va, vb), *shown])
    else:
        lines.append("params: the same")
    lines.append("")
    split = result.get("test_split") or {}
    metric_rows = [(f, k, e) for f, keys in result["metrics"].items() for k, e in sorted(keys.items())]
    if metric_rows and split and not split["same"]:
        lines.append(
            f"metrics (each on its own test split: {split['path']} {(split['a'] or '-')[:12]} vs "
            f"{(split['b'] or '-')[:12]}; the change is not on the same rows)"
        )
        lines += _table(
            [("", va, vb, "change (other rows)")]
            + [(k if f == str(catalog.METRICS) else f"{f}:{k}", _value(e.get("old")), _value(e.get("new")),
                _change(e)) for f, k, e in metric_rows]
        )  # fmt: skip
    elif metric_rows:
        lines.append(f"metrics (the same test split: {split['path']} {(split['a'] or '-')[:12]})" if split
                     else "metrics")  # fmt: skip
        lines += _table(
            [("", va, vb, "change")]
            + [(k if f == str(catalog.METRICS) else f"{f}:{k}", _value(e.get("old")), _value(e.get("new")),
                _change(e)) for f, k, e in metric_rows]
        )  # fmt: skip
    else:
        lines.append("metrics: none recorded")
    lines.append("")
    lines += _promotion_lines(result, va, vb)
    lines.append("")
    lines.append("data and model hashes (dvc.lock)")
    rows = [("", "", va, vb)]
    for path, o in result["outputs"].items():
        state = "same" if o["same"] else "different"
        rows.append((path, state, (o["a"] or "-")[:12], "" if o["same"] else (o["b"] or "-")[:12]))
    lines += _table(rows)
    return "\n".join(lines)


def _promotion_lines(result: dict[str, Any], va: str, vb: str) -> list[str]:
    """The same-rows comparison (a recorded decision of one version against the other) and each
    version's own decision, with the rows it was made on."""
    from tunepipe.promotion import summary

    lines = []
    same = result.get("same_rows")
    if same:
        lines.append(
            f"on the same rows ({same['challenger']}'s promotion decision: {same['champion']} scored on "
            f"{same['challenger']}'s {same['rows']})"
        )
        lines += _table(
            [
                ("", same["champion"], same["challenger"], "change", f"{same['confidence']:.0%} interval"),
                (
                    same["metric"],
                    f"{same['champion_score']:.4f}",
                    f"{same['challenger_score']:.4f}",
                    f"{same['improvement']:+.4f}",
                    f"[{same['low']:+.4f}, {same['high']:+.4f}]",
                ),
            ]
        )
    elif not (result.get("test_split") or {"same": True})["same"]:
        lines.append(
            f"on the same rows: no decision compared {va} with {vb} (the version in the stage at "
            "each registration was another); the metrics above are on different rows"
        )
    decisions = result.get("promotion") or {}
    lines.append("promotion decisions (at registration)")
    lines += _table(
        [
            (v, summary(d) if d else "none recorded (registered without the flow)")
            for v, d in decisions.items()
        ]
    )
    return lines
