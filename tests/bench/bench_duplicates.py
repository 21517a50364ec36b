"""Duplicate contact detection: precision and recall on a generated labelled set with typos.

People are generated with Faker (Dutch locale); about a third get a second record with
realistic damage (typos, swapped first/last names, e-mail typos or another address, day/month
swapped in the date of birth, missing fields), and some get a relative at the same address and
phone (hard negatives). ``BENCH_DUPLICATES_PEOPLE`` changes the size.
"""

from __future__ import annotations

import os
import random
import time
from datetime import date

PEOPLE = int(os.environ.get("BENCH_DUPLICATES_PEOPLE", "5000"))


def typo(text: str, rng: random.Random) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.choice(["swap", "drop", "double", "replace"])
    if kind == "swap":
        return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
    if kind == "drop":
        return text[:i] + text[i + 1 :]
    if kind == "double":
        return text[:i] + text[i] + text[i:]
    return text[:i] + rng.choice("aeiourstn") + text[i + 1 :]


def damaged(person: dict, rng: random.Random) -> dict:
    copy = dict(person)
    damages = rng.sample(
        ["name", "swap", "email", "other_email", "no_email", "dob", "no_phone", "street"],
        rng.choice([2, 3]),
    )
    if "name" in damages:
        field = rng.choice(["first_name", "last_name"])
        copy[field] = typo(copy[field], rng)
    if "swap" in damages:
        copy["first_name"], copy["last_name"] = copy["last_name"], copy["first_name"]
    if "email" in damages:
        local, domain = copy["email"].split("@")
        copy["email"] = f"{typo(local, rng)}@{domain}"
    if "no_email" in damages:
        copy["email"] = ""
    if "other_email" in damages:
        copy["email"] = f"{copy['first_name'][0]}{rng.randrange(10**6)}@work.example".lower()
    if "dob" in damages and copy["date_of_birth"].day <= 12:
        d = copy["date_of_birth"]
        copy["date_of_birth"] = date(d.year, d.day, d.month)
    if "no_phone" in damages:
        copy["phone"] = ""
    if "street" in damages:
        copy["street"] = typo(copy["street"], rng)
    return copy


def labelled_contacts(people: int, seed: int = 7) -> tuple[list[dict], set[tuple[int, int]]]:
    from faker import Faker

    fake = Faker("nl_NL")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    contacts, truth = [], set()
    for n in range(people):
        first, last = fake.first_name(), fake.last_name()
        person = {
            "id": len(contacts) + 1,
            "external_id": f"gen-{n}",
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}{rng.randrange(100)}@example.com".lower().replace(" ", ""),
            "phone": f"+3161{rng.randrange(10**7):07d}",
            "street": fake.street_address(),
            "postal_code": fake.postcode(),
            "date_of_birth": fake.date_of_birth(minimum_age=18, maximum_age=80),
        }
        contacts.append(person)
        if rng.random() < 0.15:
            # A relative at the same address, often on the same landline: not a duplicate.
            relative = dict(person, id=len(contacts) + 1, external_id=f"gen-{n}-rel")
            relative["first_name"] = fake.first_name()
            relative["email"] = f"{relative['first_name']}{rng.randrange(1000)}@example.com"
            relative["date_of_birth"] = fake.date_of_birth(minimum_age=18, maximum_age=80)
            if rng.random() < 0.5:
                relative["phone"] = f"+3130{rng.randrange(10**7):07d}"
            contacts.append(relative)
        if rng.random() < 0.33:
            twin = damaged(person, rng)
            twin["id"], twin["external_id"] = len(contacts) + 1, f"gen-{n}-dup"
            contacts.append(twin)
            truth.add((person["id"], twin["id"]))
    return contacts, truth


def precision_recall(contacts, truth, min_score) -> tuple[float, float, int]:
    from crm.duplicates import duplicate_candidates

    found = {(c.a["id"], c.b["id"]) for c in duplicate_candidates(contacts, min_score=min_score)}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    return precision, hits / len(truth), len(found)


def run() -> None:
    contacts, truth = labelled_contacts(PEOPLE)
    print(f"{len(contacts)} contacts, {len(truth)} true duplicate pairs")
    for min_score in (0.4, 0.5, 0.6, 0.7):
        started = time.perf_counter()
        precision, recall, found = precision_recall(contacts, truth, min_score)
        elapsed = time.perf_counter() - started
        print(
            f"min score {min_score:.1f}: {found} pairs, precision {precision:.1%},"
            f" recall {recall:.1%} ({len(contacts) / elapsed:,.0f} contacts/s)"
        )
