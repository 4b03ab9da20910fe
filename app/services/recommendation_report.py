"""The steering group's status report on recommendations as printable Markdown (the data:
:meth:`app.services.recommendations.RecommendationService.report`)."""

from __future__ import annotations

from app.models.recommendation import RecommendationReport
from app.services.recommendations import STATUS_ORDER

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|*_`[]<>#"} | {"\n": " ", "\r": " "})


def _md(text: str) -> str:
    """Escape text for a Markdown table cell (no markup, no HTML, one line)."""
    return text.translate(_MD_SPECIAL)


def _status_label(status: str) -> str:
    return status.replace("_", " ")


def render_markdown(report: RecommendationReport) -> str:
    """The report as printable Markdown for the steering group."""
    out: list[str] = [
        "# Recommendations of the steering group — status report",
        "",
        f"Generated on {report.generated_on.isoformat()} · {report.total} recommendation(s) · "
        f"{report.overdue} overdue",
        "",
        "## Status by addressee",
        "",
    ]
    if report.by_addressee:
        head = [
            "Addressee",
            *(_status_label(s) for s in STATUS_ORDER),
            "total",
            "overdue",
            "Ø progress",
        ]
        out.append("| " + " | ".join(head) + " |")
        out.append("|---|" + "---:|" * (len(head) - 1))
        for summary in report.by_addressee:
            cells = [
                _md(summary.addressee_name),
                *(str(summary.by_status.get(s.value, 0)) for s in STATUS_ORDER),
                str(summary.total),
                str(summary.overdue),
                "–" if summary.average_progress is None else f"{summary.average_progress:g} %",
            ]
            out.append("| " + " | ".join(cells) + " |")
    else:
        out.append("_No recommendations yet._")
    out += ["", "## Overdue", ""]
    if report.overdue_items:
        out.append("| Reference | Title | Addressee | Due on | Days overdue | Status | Progress |")
        out.append("|---|---|---|---|---:|---|---:|")
        for item in report.overdue_items:
            out.append(
                f"| {item.reference} | {_md(item.title)} | {_md(item.addressee_name)} | "
                f"{item.due_on.isoformat() if item.due_on else ''} | {item.days_overdue} | "
                f"{_status_label(item.status)} | {item.progress} % |"
            )
    else:
        out.append("_No recommendation is overdue._")
    out += ["", "## Progress and evidence", ""]
    if report.items:
        out.append(
            "| Reference | Title | Category | Addressee | Status | Progress | Due on | "
            "Evidence (incidents) | Districts |"
        )
        out.append("|---|---|---|---|---|---:|---|---:|---|")
        for item in report.items:
            due = item.due_on.isoformat() if item.due_on else "–"
            if item.overdue:
                due += " (overdue)"
            out.append(
                f"| {item.reference} | {_md(item.title)} | {_status_label(item.category)} | "
                f"{_md(item.addressee_name)} | {_status_label(item.status)} | "
                f"{_progress_bar(item.progress)} | {due} | {item.evidence_count} | "
                f"{_md(', '.join(item.districts)) or '–'} |"
            )
    else:
        out.append("_No recommendations yet._")
    out.append("")
    return "\n".join(out)


def _progress_bar(progress: int) -> str:
    filled = progress // 10
    return f"{'█' * filled}{'░' * (10 - filled)} {progress} %"
