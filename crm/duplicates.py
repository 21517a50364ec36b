"""Likely duplicate contacts: typos, swapped names, formatting differences.

Contacts are grouped by cheap blocking keys (e-mail, e-mail local part, phone, date of birth,
name sounds, postal code), so only contacts sharing a key are compared: the work grows with
the number of contacts, not its square. Each compared pair gets a score from 0 to 1 and the
reasons behind it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import combinations

from crm.models import Contact

FIELDS = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "street",
    "postal_code",
    "date_of_birth",
)
# Blocks bigger than this are too common a key ("Jan", a shared switchboard) to compare.
MAX_BLOCK = 50
DEFAULT_MIN_SCORE = 0.6


@dataclass(frozen=True)
class Candidate:
    a: dict
    b: dict
    score: float
    reasons: tuple[str, ...]


def plain(text: str | None) -> str:
    decomposed = unicodedata.normalize("NFKD", text or "")
    return re.sub(r"[^a-z0-9 ]", "", "".join(c for c in decomposed if c.isascii()).lower()).strip()


def email_local(email: str) -> str:
    local, _, domain = (email or "").partition("@")
    local = local.split("+")[0]
    if domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
    return local


def sound(name: str) -> str:
    """A rough phonetic key: first letter, then consonant skeleton (Jansen ~ Janssen ~ Jansens)."""
    name = plain(name).replace(" ", "")
    if not name:
        return ""
    skeleton = re.sub(r"[aeiouyhw]", "", name[1:])
    skeleton = re.sub(r"(.)\1+", r"\1", skeleton)
    return name[0] + skeleton[:3]


def blocking_keys(contact: dict) -> Iterator[str]:
    if contact["email"]:
        yield "e:" + contact["email"]
        yield "l:" + email_local(contact["email"])
    if contact["phone"]:
        yield "p:" + contact["phone"][-8:]
    if contact["date_of_birth"]:
        yield "d:" + contact["date_of_birth"].isoformat()
    first, last = sound(contact["first_name"]), sound(contact["last_name"])
    if first and last:
        yield "n:" + "|".join(sorted((first, last)))  # also catches swapped first/last names
    if contact["postal_code"] and last:
        yield "a:" + plain(contact["postal_code"]).replace(" ", "") + last


def similarity(a: str, b: str) -> float:
    a, b = plain(a), plain(b)
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b).ratio()


def pair_score(a: dict, b: dict) -> tuple[float, list[str]]:
    """Evidence adds up; conflicting dates of birth count against."""
    score, reasons = 0.0, []
    if a["email"] and a["email"] == b["email"]:
        score += 0.6
        reasons.append("same e-mail")
    elif (
        a["email"]
        and b["email"]
        and similarity(email_local(a["email"]), email_local(b["email"])) >= 0.85
    ):
        score += 0.35
        reasons.append("similar e-mail")
    if a["phone"] and a["phone"] == b["phone"]:
        score += 0.45
        reasons.append("same phone")
    names_a = f"{a['first_name']} {a['last_name']}"
    names_b = f"{b['first_name']} {b['last_name']}"
    straight = similarity(names_a, names_b)
    swapped = similarity(names_a, f"{b['last_name']} {b['first_name']}")
    best = max(straight, swapped)
    if best >= 0.85:
        score += 0.3 * best
        reasons.append("same name" if best == 1 else "similar name")
        if swapped > straight and swapped >= 0.85:
            reasons.append("first and last name swapped")
    dob_a, dob_b = a["date_of_birth"], b["date_of_birth"]
    if dob_a and dob_b:
        if dob_a == dob_b:
            score += 0.25
            reasons.append("same date of birth")
        elif (dob_a.year, dob_a.month, dob_a.day) == (dob_b.year, dob_b.day, dob_b.month):
            score += 0.15
            reasons.append("date of birth with day and month swapped")
        else:
            score -= 0.4
            reasons.append("different date of birth")
    address_a = f"{a['street']} {a['postal_code']}"
    if (
        a["street"]
        and b["street"]
        and similarity(address_a, f"{b['street']} {b['postal_code']}") >= 0.85
    ):
        score += 0.2
        reasons.append("same address")
    return round(min(max(score, 0.0), 1.0), 3), reasons


def duplicate_candidates(
    contacts: Iterable[dict] | None = None, *, min_score: float = DEFAULT_MIN_SCORE
) -> list[Candidate]:
    """Pairs of likely duplicates, best first."""
    if contacts is None:
        contacts = Contact.objects.values(*FIELDS).iterator(chunk_size=5000)
    blocks = defaultdict(list)
    by_id = {}
    for contact in contacts:
        by_id[contact["id"]] = contact
        for key in blocking_keys(contact):
            blocks[key].append(contact["id"])
    seen, found = set(), []
    for ids in blocks.values():
        if len(ids) < 2 or len(ids) > MAX_BLOCK:
            continue
        for pair in combinations(sorted(set(ids)), 2):
            if pair in seen:
                continue
            seen.add(pair)
            a, b = by_id[pair[0]], by_id[pair[1]]
            score, reasons = pair_score(a, b)
            if score >= min_score:
                found.append(Candidate(a, b, score, tuple(reasons)))
    return sorted(found, key=lambda c: (-c.score, c.a["id"], c.b["id"]))
