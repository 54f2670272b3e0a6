"""Levels and product names sent in another case, with surrounding spaces, or with their words joined or
separated otherwise ("Acquiring", "Retail ", "GTX Pro" for "GTXPro", "credit-line" for "credit_line") mean the
fitted spelling: one rule for the deal scorer's categorical features, the ideal profiles' products and segment
levels, and training's won-products-as-holdings. An exact spelling always wins; a folded form that two fitted
spellings share ("NA" and "na", "GTX Pro" and "GTXPro") means neither.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_SEPARATORS = re.compile(r"[\s_\-]+")


def folded_form(text: str) -> str:
    # Word separators go too: maven's export spells one product "GTXPro" in its deals and "GTX Pro" elsewhere, and
    # a holdings table in the second spelling had every client offered the product it held (the analytics audit).
    return _SEPARATORS.sub("", text.casefold())


def folded_spellings(spellings: Sequence[str]) -> dict[str, int]:
    """Each spelling's folded form to the spelling's position, for the forms that exactly one spelling has."""
    out: dict[str, int] = {}
    shared: set[str] = set()
    for position, spelling in enumerate(spellings):
        form = folded_form(spelling)
        if form in out:
            shared.add(form)
        out[form] = position
    return {form: position for form, position in out.items() if form not in shared}


def fitted_spellings(spellings: Sequence[str]) -> dict[str, str]:
    """Each folded form to the one fitted spelling that has it (forms two spellings share are left out)."""
    return {form: spellings[position] for form, position in folded_spellings(spellings).items()}


def merged_spellings(values: Iterable[str]) -> dict[str, str]:
    """Within one table's column, each spelling that another, more frequent one folds alike to that one (ties:
    the first in sorted order): a holdings export naming one product "Credit Line" in some rows and
    "credit_line" in others means one product, not two (the profiles had listed it twice, and offered a client
    holding one spelling the other)."""
    counts = Counter(values)
    chosen: dict[str, str] = {}
    for spelling in sorted(counts, key=lambda s: (-counts[s], s)):
        chosen.setdefault(folded_form(spelling), spelling)
    return {spelling: chosen[folded_form(spelling)] for spelling in counts if chosen[folded_form(spelling)] != spelling}


def merged_spellings_note(merged: dict[str, str], table: str = "holdings") -> str | None:
    """Says which spellings `merged_spellings` read as another (None when none)."""
    if not merged:
        return None
    shown = ", ".join(f"{spelling!r} as {chosen!r}" for spelling, chosen in list(merged.items())[:5])
    more = f" and {len(merged) - 5} more" if len(merged) > 5 else ""
    return (f"the {table} table spells products in several ways that differ only in case, spaces, '_' or '-'; each "
            f"is read as its commonest spelling: {shown}{more}")


def nearest_spelling(name: str, spellings: Sequence[str]) -> str | None:
    """The fitted spelling `name` most likely misspells ("Deposits" for deposit), for a "did you mean" only: it is
    never read as that spelling (a near name may be another product). None when none is close."""
    forms = fitted_spellings(spellings)
    close = difflib.get_close_matches(folded_form(name), list(forms), n=1, cutoff=0.8)
    return forms[close[0]] if close else None
