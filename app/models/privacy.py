"""Marks for personal data in the table models.

A column holding personal data carries ``info={"personal": KIND}`` — in SQLModel
``Field(..., sa_column_kwargs=personal())`` or ``Column(..., info=personal_info())``. ``PRIVACY.md``
lists every marked column (``table.column``); ``tests/test_privacy_doc.py`` fails when a model gains
a marked column the document does not list.

Kinds:

* ``direct`` — identifies or contacts a person by definition (reporter name and contact, a
  manager's name, e-mail and phone, an absence reason);
* ``free_text`` — text written by staff, partners or managers that *may* mention a person
  (descriptions, notes, decline reasons). Erasure replaces the erased values
  by ``[erased]`` where they occur.
"""

from __future__ import annotations

from typing import Any, Literal

PersonalKind = Literal["direct", "free_text"]
INFO_KEY = "personal"


def personal_info(kind: PersonalKind = "direct") -> dict[str, Any]:
    """``Column(info=...)`` for a personal column."""
    return {INFO_KEY: kind}


def personal(kind: PersonalKind = "direct") -> dict[str, Any]:
    """``Field(sa_column_kwargs=...)`` for a personal column."""
    return {"info": personal_info(kind)}
