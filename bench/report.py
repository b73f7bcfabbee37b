"""Write a benchmark run as JSON, a Markdown table and a PNG bar chart."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

SPLIT_ROW = "gateway MLLP end to end, 32 senders, intake + delivery processes"

COLUMNS = [("name", "what"), ("msg_per_s", "msg/s"), ("delivered_per_s", "delivered msg/s"),
           ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
           ("cpu_s_per_1000", "CPU s / 1000 msg"), ("cpu_gateway", "of which gateway"),
           ("cpu_postgres", "of which PostgreSQL"), ("peak_rss_mb", "peak RSS MB"),
           ("loop_cores", "gateway event loop cores"), ("machine_cores", "machine busy cores"),
           ("drain_after_s", "drain after load s"), ("acked", "acked"), ("messages", "sent"),
           ("failed", "no ACK")]


def _cell(v) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if v >= 100 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(rows: list[dict], notes: list[str], mach: dict, quick: bool) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Run {when}{' (--quick: small counts, tooling check only)' if quick else ''} on "
           f"{mach['nproc']} × {mach['cpu']}, {mach['memory_gb']} GB RAM, Linux {mach['kernel']}, "
           f"Python {mach['python']}, node {mach['node']}; load average at start {mach['loadavg']}, "
           f"at end {mach.get('loadavg_end', '?')}; page cache: {mach.get('writeback', '?')}. "
           f"Load generators run on the same machine.", "",
           "| " + " | ".join(h for _, h in COLUMNS) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(k)) for k, _ in COLUMNS) + " |")
    by = {r["name"]: r for r in rows}
    g32 = by.get("gateway MLLP end to end, 32 senders")
    m32 = by.get("peer: Medplum Hl7Server parse+ACK, 32 conn")
    split = by.get(SPLIT_ROW)
    if g32 and m32 and m32["msg_per_s"]:
        out += ["", f"Gateway (full durable path) / Medplum (parse + ACK only), 32 connections: "
                    f"**{g32['msg_per_s'] / m32['msg_per_s']:.2f}×**"
                    + (f" (intake + delivery processes: {split['msg_per_s'] / m32['msg_per_s']:.2f}×)"
                       if split else "") + "."]
    out += ["", "msg/s counts positive ACKs over the load; delivered msg/s counts the same "
                "messages from the first send until the last was delivered to the sink."]
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in rows if r.get("msg_per_s")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 0.45 * len(rows) + 2), sharey=True)
    names = [r["name"] for r in rows]
    colors = ["tab:blue" if n.startswith("gateway") else "tab:gray" if n.startswith("floor")
              else "tab:orange" for n in names]
    ax1.barh(names, [r["msg_per_s"] for r in rows], color=colors)
    ax1.set_xscale("log")
    ax1.set_xlabel("messages per second (log)")
    ax1.invert_yaxis()
    for i, r in enumerate(rows):
        ax1.text(r["msg_per_s"], i, f" {r['msg_per_s']:,.0f}", va="center", fontsize=8)
    ax2.barh(names, [r["p99_ms"] for r in rows], color=colors, alpha=0.5, label="p99")
    ax2.barh(names, [r["p50_ms"] for r in rows], color=colors, label="p50")
    ax2.set_xscale("log")
    from matplotlib.ticker import NullFormatter
    for ax in (ax1, ax2):
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel("ACK latency ms (log): p50 solid, p99 light")
    fig.suptitle("labgate benchmark: gateway (blue), floors (grey), Medplum peer (orange)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(out: Path, rows: list[dict], notes: list[str], mach: dict, *, quick: bool) -> None:
    (out / "results.json").write_text(json.dumps({"machine": mach, "rows": rows, "notes": notes,
                                                  "quick": quick}, indent=2))
    (out / "results.md").write_text(markdown(rows, notes, mach, quick))
    plot(rows, out / "results.png")


def update_doc(doc: Path, table_md: str, block: str = "bench") -> None:
    """Replace the text between ``<!-- {block}:begin/end -->`` in ``doc``."""
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    text = doc.read_text()
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    if not rest:
        raise ValueError(f"{doc} has no {begin} … {end} block")
    doc.write_text(f"{head}{begin}\n{table_md}{end}{tail}")
