"""The issue's targets, judged from the result files: met / missed with the measured ratio."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from benchmarks.common import results_dir


@dataclass(slots=True)
class Verdict:
    """One target: what was measured, against what, and whether it is met."""

    name: str
    measured: str
    goal: str
    ratio: float | None  # measured / goal, oriented so that >= 1 means met
    met: bool | None  # None: not measured

    def row(self) -> str:
        """A markdown table row."""
        status = "not measured" if self.met is None else ("**met**" if self.met else "**missed**")
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        return f"| {self.name} | {self.measured} | {self.goal} | {ratio} | {status} |"


def _docs(prefix: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(results_dir().glob(f"{prefix}-*.json")):
        doc = json.loads(path.read_text())
        out[doc["size_label"]] = doc
    return out


def _at_least(name: str, value: float | None, goal: float, unit: str, fmt: str = "{:,.0f}") -> Verdict:
    if value is None:
        return Verdict(name, "-", f">= {fmt.format(goal)} {unit}", None, None)
    return Verdict(
        name, f"{fmt.format(value)} {unit}", f">= {fmt.format(goal)} {unit}", value / goal, value >= goal
    )


def _at_most(name: str, value: float | None, goal: float, unit: str, fmt: str = "{:,.1f}") -> Verdict:
    if value is None:
        return Verdict(name, "-", f"<= {fmt.format(goal)} {unit}", None, None)
    ratio = goal / value if value else float("inf")
    return Verdict(name, f"{fmt.format(value)} {unit}", f"<= {fmt.format(goal)} {unit}", ratio, value <= goal)


def _get(doc: dict[str, Any] | None, *keys: str) -> Any:
    node: Any = doc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def judge() -> list[Verdict]:
    """Every target, from the latest result files."""
    inproc, grpc_docs, casbin = _docs("inprocess"), _docs("grpc"), _docs("casbin")
    grpc_doc = grpc_docs.get("1M") or grpc_docs.get("100k") or next(iter(grpc_docs.values()), None)
    glabel = grpc_doc["size_label"] if grpc_doc else "?"
    out: list[Verdict] = []
    ratio = _get(grpc_doc, "ratios", "check_h2load/stonetown_x1_vs_floor_x1")
    if ratio is None:
        ratio = _get(grpc_doc, "ratios", "check_mix_py/stonetown_x1_vs_floor_x1")
    per_cpu = _get(grpc_doc, "ratios", "check_h2load/stonetown_x1_vs_floor_x1_requests_per_cpu_s")
    cpu_note = f"; per server CPU second: {per_cpu:.2f} x" if per_cpu else ""
    out.append(
        _at_least(f"gRPC Check, 1 process, vs floor ({glabel}{cpu_note})", ratio, 0.8, "x floor", "{:.2f}")
    )
    p99 = _get(grpc_doc, "stonetown", "workers_1", "check_h2load_half_rate", "p99_us")
    floor_p99 = _get(grpc_doc, "floor", "workers_1", "check_h2load_half_rate", "p99_us")
    floor_note = f"; the floor at the same rate: {floor_p99 / 1000:.2f} ms" if floor_p99 else ""
    out.append(
        _at_most(
            f"gRPC Check p99 at half max throughput ({glabel}{floor_note})",
            p99 / 1000 if p99 else None,
            2.0,
            "ms",
            "{:.2f}",
        )
    )
    scale = _get(grpc_doc, "ratios", "check_h2load/stonetown_x2_vs_x1") or _get(
        grpc_doc, "ratios", "check_mix_py/stonetown_x2_vs_x1"
    )
    out.append(_at_least(f"gRPC Check --workers 2 vs 1 ({glabel})", scale, 1.5, "x", "{:.2f}"))
    bulk = max(
        (
            _get(grpc_doc, "stonetown", w, "check_bulk_h2load", "checks_per_s") or 0
            for w in ("workers_1", "workers_2")
        ),
        default=0,
    )
    out.append(_at_least(f"gRPC CheckBulk checks/s ({glabel})", bulk or None, 50_000, "checks/s"))
    big = inproc.get("1M")
    label = "1M"
    if big is None and inproc:
        label, big = max(inproc.items(), key=lambda kv: kv[1]["size"])
    for stat, goal in (("p50_us", 20.0), ("p99_us", 200.0)):
        worst = None
        if big:
            worst = max(row[stat] for name, row in big["workloads"].items() if name.startswith("check_core/"))
        out.append(_at_most(f"in-process Check {stat[:3]}, worst kind, {label}", worst, goal, "µs"))
    small = inproc.get("10k")
    largest = max(inproc.values(), key=lambda d: d["size"]) if inproc else None
    if small and largest and largest is not small:
        growth = (
            largest["workloads"]["check_core/mix"]["p50_us"] / small["workloads"]["check_core/mix"]["p50_us"]
        )
        out.append(
            _at_most(
                f"Check p50 growth {largest['size_label']} vs 10k (10M goal)", growth, 2.0, "x", "{:.2f}"
            )
        )
    out.append(
        _at_most(
            f"index memory per relationship ({label})", _get(big, "index_bytes_per_relationship"), 300, "B"
        )
    )
    out.append(_at_most(f"load from SQLite ({label})", _get(big, "load_seconds"), 20.0, "s"))
    writes_doc, wlabel = grpc_doc, glabel
    only_writes = _docs("grpc_writes").get(glabel)  # `grpc --writes-only`: used when newer
    if only_writes and (
        grpc_doc is None or only_writes["environment"]["time"] > grpc_doc["environment"]["time"]
    ):
        writes_doc, wlabel = only_writes, only_writes["size_label"]
    writes = _get(writes_doc, "stonetown", "workers_1", "write_single_py", "throughput_per_s")
    out.append(_at_least(f"gRPC WriteRelationships/s, 16 clients ({wlabel})", writes, 2000, "writes/s"))
    out.append(_at_least(f"bulk import ({label})", _get(big, "import_rel_per_s"), 100_000, "rel/s"))
    lr_doc = big if (_get(big, "workloads", "lookup_resources_big", "results") or 0) >= 10_000 else None
    lr_doc = lr_doc or inproc.get("100k")
    lr = _get(lr_doc, "workloads", "lookup_resources_big", "p50_us")
    lr_name = (
        f"LookupResources of >= 10,000 objects, p50 in process ({lr_doc['size_label'] if lr_doc else '?'})"
    )
    out.append(_at_most(lr_name, lr / 1000 if lr else None, 100, "ms"))
    lr_grpc = _get(grpc_doc, "stonetown", "workers_1", "lookup_resources_big_h2load", "p50_us")
    out.append(
        _at_most(
            f"LookupResources of 10,000 over gRPC, p50 ({glabel})",
            lr_grpc / 1000 if lr_grpc else None,
            100,
            "ms",
        )
    )
    if casbin:
        clabel, cdoc = max(casbin.items(), key=lambda kv: kv[1]["size"])
        ours = _get(inproc.get(clabel), "workloads", "check_core/mix", "throughput_per_s")
        theirs = cdoc["enforce"]["throughput_per_s"]
        ratio = ours / theirs if ours else None
        out.append(
            _at_least(f"Check/s vs pycasbin ({clabel}: {cdoc['grants']:,} grants)", ratio, 1000, "x pycasbin")
        )
    out.extend(realistic_verdicts())
    return out


def _worst_check(doc: dict[str, Any] | None, stat: str) -> tuple[float | None, str]:
    rows = [(row[stat], name[11:]) for name, row in _get(doc, "inprocess", "workloads").items()
            if name.startswith("check_core/") and name != "check_core/mix"] if doc else []  # fmt: skip
    return max(rows) if rows else (None, "")


def realistic_verdicts(shape: str = "docs") -> list[Verdict]:
    """Issue #19's goals on the realistic `shape` (`python -m benchmarks realistic`): at 1M
    (else the largest size measured, named in the row)."""
    docs = _docs(f"realistic-{shape}")
    if not docs:
        return [Verdict(f"issue #19 targets ({shape} shape)", "-", "see benchmarks/README.md", None, None)]
    label = "1M" if "1M" in docs else max(docs.items(), key=lambda kv: kv[1]["size"])[0]
    big = docs[label]
    out: list[Verdict] = []
    for stat, goal in (("p50_us", 10.0), ("p99_us", 100.0)):
        worst, kind = _worst_check(big, stat)
        out.append(
            _at_most(f"{shape}: in-process Check {stat[:3]}, worst kind ({kind}), {label}", worst, goal, "µs")
        )
    grpc_doc = max((d for d in docs.values() if "grpc" in d), key=lambda d: d["size"], default=None)
    glabel = grpc_doc["size_label"] if grpc_doc else "?"
    out.append(
        _at_most(
            f"{shape}: gRPC single-check p50 vs the empty server ({glabel})",
            _get(grpc_doc, "grpc", "single_ratio_vs_floor"), 1.3, "x floor", "{:.2f}",
        )
    )  # fmt: skip
    for name in ("lookup_resources", "lookup_subjects"):
        row = _get(big, "inprocess", "workloads", f"{name}/0") or {}
        value = row["p50_us"] / 1000 if "p50_us" in row else None
        if value is None and "timed_out_after_s" in row:
            value = row["timed_out_after_s"] * 1000.0
        results = row.get("results", "?")
        out.append(_at_most(f"{shape}: {name} ({results} results) in process, p50, {label}", value, 50, "ms"))
    small, largest = docs.get("10k"), max(docs.values(), key=lambda d: d["size"])
    if small and largest is not small:
        growth = _worst_check(largest, "p50_us")[0] / _worst_check(small, "p50_us")[0]  # type: ignore[operator]
        out.append(
            _at_most(
                f"{shape}: Check p50 growth {largest['size_label']} vs 10k (10M goal)",
                growth,
                1.5,
                "x",
                "{:.2f}",
            )
        )
    else:
        out.append(_at_most(f"{shape}: Check p50 growth 10M vs 10k", None, 1.5, "x", "{:.2f}"))
    load_doc = docs.get("10M") or largest
    lname = load_doc["size_label"]
    out.append(
        _at_most(
            f"{shape}: load from SQLite ({lname}; goal at 10M)",
            _get(load_doc, "inprocess", "load_seconds"),
            60,
            "s",
        )
    )
    out.append(
        _at_most(
            f"{shape}: load from SQLite, CPU s of all its threads ({lname}; wall s above count the "
            "other sessions of a shared machine)",
            _get(load_doc, "inprocess", "load_cpu_seconds"), 60, "s",
        )
    )  # fmt: skip
    out.append(
        _at_most(
            f"{shape}: index memory per relationship ({lname})",
            _get(load_doc, "inprocess", "index_bytes_per_relationship"), 200, "B",
        )
    )  # fmt: skip
    floor_scale = _get(grpc_doc, "grpc", "scaling", "floor_x2_vs_x1")
    floor_note = f"; the empty server: {floor_scale:.2f} x" if floor_scale else ""
    out.append(
        _at_least(
            f"{shape}: gRPC Check --workers 2 vs 1 ({glabel}{floor_note})",
            _get(grpc_doc, "grpc", "workers_2_vs_1"), 1.6, "x", "{:.2f}",
        )
    )  # fmt: skip
    half = _get(grpc_doc, "grpc", "half_rate_per_s")
    out.append(
        _at_most(
            f"{shape}: gRPC Check p99 at half max ({half or '?'}/s) vs the empty server's ({glabel})",
            _get(grpc_doc, "grpc", "tail_p99_ratio_vs_floor"), 3.0, "x floor", "{:.2f}",
        )
    )  # fmt: skip
    return out


def markdown() -> str:
    """The targets table in markdown."""
    lines = ["| target | measured | goal | ratio (>= 1 is met) | status |", "|---|---|---|---|---|"]
    lines.extend(v.row() for v in judge())
    return "\n".join(lines)


def tables() -> str:
    """Markdown tables of the latest in-process, gRPC and pycasbin results."""
    lines: list[str] = []
    inproc = sorted(_docs("inprocess").values(), key=lambda d: d["size"])
    if inproc:
        lines += [
            "| size | relationships | import rel/s | load s | index B/rel | workload | ops/s "
            "| p50 µs | p90 µs | p99 µs | max µs |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for doc in inproc:
            first = True
            for name, row in doc["workloads"].items():
                head = (
                    f"| {doc['size_label']} | {doc['relationships']:,} | {doc['import_rel_per_s']:,.0f} | "
                    f"{doc['load_seconds']} | {doc['index_bytes_per_relationship']:.0f} "
                    if first
                    else "| | | | | "
                )
                first = False
                lines.append(
                    f"{head}| {name} | {row['throughput_per_s']:,.0f} | {row['p50_us']:,.1f} | "
                    f"{row['p90_us']:,.1f} | {row['p99_us']:,.1f} | {row['max_us']:,.1f} |"
                )
        lines.append("")
    for doc in sorted(_docs("grpc").values(), key=lambda d: d["size"]):
        lines += [
            f"gRPC, {doc['size_label']} relationships, {doc['duration_s']} s per run, "
            f"best of {doc.get('reps', 1)}:",
            "",
            "| server | workload | req/s | p50 µs | p90 µs | p99 µs | max µs | client CPU % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for side in ("floor", "floor_interceptor", "stonetown"):
            for workers, rows in doc.get(side, {}).items():
                for name, row in rows.items():
                    if not isinstance(row, dict) or "p50_us" not in row:
                        continue
                    lines.append(
                        f"| {side} {workers.replace('workers_', 'x')} | {name} | "
                        f"{row['throughput_per_s']:,.0f} | "
                        f"{row['p50_us']:,.0f} | {row['p90_us']:,.0f} | {row['p99_us']:,.0f} | "
                        f"{row['max_us']:,.0f} | {row.get('client_cpu_percent', '-')} |"
                    )
        lines.append("")
        lines.append("Ratios (best runs; paired adjacent runs in brackets):")
        lines.append("")
        for name, value in doc.get("ratios", {}).items():
            lines.append(f"- `{name}`: {value} {doc.get('paired_ratios', {}).get(name, '')}")
        lines.append("")
    cas = sorted(_docs("casbin").values(), key=lambda d: d["size"])
    if cas:
        lines += [
            "| dataset | casbin policies | role links | load s | enforce/s | p50 µs | p99 µs "
            "| wrong answers |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for doc in cas:
            e = doc["enforce"]
            lines.append(
                f"| {doc['size_label']} | {doc['grants']:,} | {doc['links']:,} | {doc['load_seconds']} | "
                f"{e['throughput_per_s']:,.1f} | {e['p50_us']:,.0f} | {e['p99_us']:,.0f} | "
                f"{doc['answers_wrong']} |"
            )
    return "\n".join(lines)
