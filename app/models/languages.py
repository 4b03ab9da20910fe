"""ISO 639-1 language codes, validated against pycountry's ISO 639 tables."""

from __future__ import annotations

from functools import lru_cache

import pycountry


@lru_cache(maxsize=1)
def iso639_1_codes() -> frozenset[str]:
    return frozenset(lang.alpha_2 for lang in pycountry.languages if getattr(lang, "alpha_2", None))


def validate_language_codes(codes: list[str]) -> list[str]:
    """Lower-case, de-duplicated (order kept); raises ValueError naming unknown codes."""
    known = iso639_1_codes()
    cleaned = list(dict.fromkeys(code.lower() for code in codes))
    unknown = [code for code in cleaned if code not in known]
    if unknown:
        raise ValueError(f"unknown ISO 639-1 language code(s): {', '.join(unknown)}")
    return cleaned
