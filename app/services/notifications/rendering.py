"""Mail text: labels in the mail language, local times, and the Jinja templates (app/templates/mail)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from app.core.config import Settings

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "de": {
        "category": {
            "right_wing_extremism": "Rechtsextremismus",
            "racism_discrimination": "Rassismus und Diskriminierung",
            "antisemitism": "Antisemitismus",
            "hate_speech": "Hassrede",
            "threat_to_civil_society": "Bedrohung der Zivilgesellschaft",
            "neighbourhood_dispute": "Nachbarschaftskonflikt",
            "public_space": "Öffentlicher Raum",
            "youth_conflict": "Jugendkonflikt",
            "other": "Sonstiges",
        },
        "role": {"lead": "Leitung", "co": "Co-Mediation im Tandem"},
        "weekday": dict(
            zip("0123456", ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."), strict=True)
        ),
    },
    "en": {
        "category": {
            "right_wing_extremism": "Right-wing extremism",
            "racism_discrimination": "Racism and discrimination",
            "antisemitism": "Antisemitism",
            "hate_speech": "Hate speech",
            "threat_to_civil_society": "Threat to civil society",
            "neighbourhood_dispute": "Neighbourhood dispute",
            "public_space": "Public space",
            "youth_conflict": "Youth conflict",
            "other": "Other",
        },
        "role": {"lead": "lead", "co": "co-mediator in a tandem"},
        "weekday": dict(
            zip("0123456", ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True)
        ),
    },
}
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_time(value: str | datetime | None, settings: Settings) -> str:
    """An instant as people in ``KOKOMA_TIMEZONE`` read it, in the mail language."""
    if value is None:
        return ""
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = instant.astimezone(settings.tz)
    weekday = LABELS[settings.mail_language]["weekday"][str(local.weekday())]
    if settings.mail_language == "de":
        return f"{weekday}, {local:%d.%m.%Y}, {local:%H:%M} Uhr"
    return (
        f"{weekday} {local.day} {_EN_MONTHS[local.month - 1]} {local.year}, "
        f"{local:%H:%M} ({settings.timezone})"
    )


_env = Environment(
    loader=PackageLoader("app", "templates/mail"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _links(payload: dict[str, Any], settings: Settings) -> dict[str, str | None]:
    base = (settings.public_url or "").rstrip("/")
    assignment = payload.get("assignment_id")
    incident = payload.get("incident_id")
    return {
        "assignment_url": f"{base}/assignments/{assignment}" if base and assignment else None,
        "accept_url": (
            f"{base}/assignments/{assignment}?answer=accept" if base and assignment else None
        ),
        "decline_url": (
            f"{base}/assignments/{assignment}?answer=decline" if base and assignment else None
        ),
        "incident_url": f"{base}/incidents/{incident}" if base and incident else None,
    }


def _item(payload: dict[str, Any], settings: Settings) -> dict[str, Any]:
    labels = LABELS[settings.mail_language]
    role = payload.get("role")
    return {
        **payload,
        "category_label": labels["category"].get(
            payload.get("category", ""), payload.get("category", "")
        ),
        "role_label": labels["role"].get(role, role) if role else None,
        "expires_local": format_time(payload.get("expires_at"), settings),
        "reported_local": format_time(payload.get("reported_at"), settings),
        **_links(payload, settings),
    }


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def render(
    kind: str, payload: dict[str, Any], settings: Settings, display_name: str | None = None
) -> RenderedMail:
    """Subject, plain text and HTML of a notification, from the templates of the language."""
    lang = settings.mail_language
    context: dict[str, Any] = {
        "item": _item({**payload, "kind": kind}, settings),
        "items": [_item(i, settings) for i in payload.get("items", [])],
        "name": display_name,
        "sla_hours": f"{settings.triage_sla_hours:g}",
        "reminder_hours": f"{settings.offer_reminder_hours:g}",
        "public_url": settings.public_url,
    }
    text_template = _env.get_template(f"{lang}/{kind}.txt")
    subject = " ".join(
        "".join(text_template.blocks["subject"](text_template.new_context(context))).split()
    )
    context["subject"] = subject
    return RenderedMail(
        subject=subject,
        text=text_template.render(context),
        html=_env.get_template(f"{lang}/{kind}.html").render(context),
    )
