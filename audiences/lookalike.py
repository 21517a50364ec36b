"""Lookalike audiences: visitors whose taxonomy categories resemble a CDP seed segment's.

Each visitor is a sparse vector over the categories of its live trait hits, weighted by inverse
document frequency (a category everybody has says little). The seed segment's linked visitors
give a centroid; every unlinked visitor is scored by cosine similarity to it and the top
``reach_percent`` of them form the audience. Quality: a fifth of the seed is held out of the
centroid and we measure which share of it would have been reached (recall). Random picking
would reach about ``reach_percent`` of it; a useful model reaches much more.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audiences.models import Audience, Visitor, VisitorTraitHit
from audiences.services import audience_members_set
from cdphub.errors import DomainError
from profiles.models import Segment

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.2
MIN_SEED_FOR_RECALL = 5

Vector = dict[int, float]


class LookalikeError(DomainError):
    field = "seed_segment"


def lookalike_build_request(*, audience: Audience, actor=None) -> Audience:
    """Mark a lookalike build as queued; the caller queues the task
    (``audiences.tasks.lookalike_build_later``): scoring reads every visitor's categories, too
    long for a request. Its status, and how it ended, are kept on the audience (and shown
    among the requester's jobs)."""
    if audience.kind != Audience.Kind.LOOKALIKE or audience.seed_segment_id is None:
        raise LookalikeError(f"audience {audience} is not a lookalike with a seed segment")
    Audience.objects.filter(pk=audience.pk).update(
        build_status=Audience.BuildStatus.QUEUED,
        build_message="",
        build_requested_by=actor if getattr(actor, "pk", None) else None,
        build_requested_at=timezone.now(),
    )
    audience.refresh_from_db()
    return audience


def lookalike_build_run(*, audience_id: int) -> None:
    """Run a queued build and record how it ended; a build delivered twice runs once."""
    claimed = Audience.objects.filter(pk=audience_id, build_status=Audience.BuildStatus.QUEUED)
    if not claimed.update(build_status=Audience.BuildStatus.BUILDING):
        return
    audience = Audience.objects.get(pk=audience_id)
    try:
        result = lookalike_build(audience=audience)
    except LookalikeError as error:
        status, message = Audience.BuildStatus.FAILED, str(error)
    except Exception:
        logger.exception("lookalike build of audience %s failed", audience_id)
        status, message = Audience.BuildStatus.FAILED, "internal error: see the server log"
    else:
        status, message = Audience.BuildStatus.READY, result.summary(audience.reach_percent)
    Audience.objects.filter(pk=audience_id).update(build_status=status, build_message=message[:500])


@dataclass(frozen=True)
class LookalikeResult:
    seed_visitors: int
    candidates: int
    size: int
    recall: float | None
    holdout: int

    def summary(self, reach_percent: int) -> str:
        recall = "n/a (seed too small)" if self.recall is None else f"{self.recall:.0%}"
        return (
            f"{self.size} of {self.candidates} visitors from a seed of {self.seed_visitors}; "
            f"held-out seed recall {recall} (random would be about {reach_percent}%). "
            f"{lookalike_verdict(self.recall, reach_percent)}"
        )


def lookalike_verdict(recall: float | None, reach_percent: int) -> str:
    """What the held-out recall says, in words: a random pick of ``reach_percent`` of the
    visitors would reach about that share of the seed too."""
    if recall is None:
        return "The seed is too small to judge the quality."
    chance = reach_percent / 100
    if recall <= chance * 1.2:
        return (
            "No better than random: the seed's interests do not set its people apart. Try a "
            "larger or more specific seed segment."
        )
    if recall >= min(1.0, chance * 2):
        return "Good: it finds the seed's people far more often than a random pick."
    return "Somewhat better than random."


@dataclass(frozen=True)
class LookalikeEstimate:
    seed_visitors: int
    candidates: int
    size: int


def lookalike_estimate(*, seed_segment_id, reach_percent, now=None) -> LookalikeEstimate:
    """The form's preview: how many visitors the seed has (linked, with live categories), how
    many could be reached, and the audience's size, by counting (no scoring). Raises
    ``LookalikeError`` for a seed segment that does not exist or a reach out of 1 to 100."""
    if not isinstance(seed_segment_id, int) or not (
        Segment.objects.filter(pk=seed_segment_id).exists()
    ):
        raise LookalikeError("choose the seed segment")
    whole = isinstance(reach_percent, int) and not isinstance(reach_percent, bool)
    if not whole or not 1 <= reach_percent <= 100:
        raise LookalikeError("the reach is a whole percentage, 1 to 100", field="reach_percent")
    now = now or timezone.now()
    live = VisitorTraitHit.objects.filter(
        expires_at__gt=now, visitor__expires_at__gt=now, visitor=OuterRef("pk")
    )
    with_data = Visitor.objects.filter(Exists(live))
    seed = with_data.filter(profile__memberships__segment_id=seed_segment_id).distinct().count()
    candidates = with_data.filter(profile__isnull=True).count()
    return LookalikeEstimate(seed, candidates, reach_size(candidates, reach_percent))


def visitor_categories(now: datetime) -> dict[int, set[int]]:
    """Live (unexpired) categories of every visitor that is not expired itself."""
    features: dict[int, set[int]] = {}
    hits = VisitorTraitHit.objects.filter(expires_at__gt=now, visitor__expires_at__gt=now)
    for visitor_id, category_id in hits.values_list("visitor_id", "category_id").iterator(
        chunk_size=20000
    ):
        features.setdefault(visitor_id, set()).add(category_id)
    return features


def idf_weights(features: dict[int, set[int]]) -> dict[int, float]:
    counts = Counter(category for categories in features.values() for category in categories)
    total = len(features)
    return {category: math.log(total / count) + 1.0 for category, count in counts.items()}


def unit_vector(categories: set[int], idf: dict[int, float]) -> Vector:
    norm = math.sqrt(sum(idf[c] ** 2 for c in categories)) or 1.0
    return {c: idf[c] / norm for c in categories}


def centroid(vectors: list[Vector]) -> Vector:
    summed: Vector = {}
    for vector in vectors:
        for category, weight in vector.items():
            summed[category] = summed.get(category, 0.0) + weight
    norm = math.sqrt(sum(w * w for w in summed.values())) or 1.0
    return {category: weight / norm for category, weight in summed.items()}


def cosine(vector: Vector, unit_centroid: Vector) -> float:
    return sum(weight * unit_centroid.get(category, 0.0) for category, weight in vector.items())


def reach_size(candidates: int, reach_percent: int) -> int:
    return math.ceil(candidates * reach_percent / 100)


def holdout_recall(seed: list[int], vectors, candidates: list[int], reach: int, rng) -> tuple:
    """Share of held-out seed visitors scoring at least the reach's cut-off score."""
    if len(seed) < MIN_SEED_FOR_RECALL or not candidates or reach == 0:
        return None, 0
    shuffled = sorted(seed)
    rng.shuffle(shuffled)
    held = shuffled[: max(1, int(len(shuffled) * HOLDOUT_SHARE))]
    train = centroid([vectors[v] for v in shuffled[len(held) :]])
    scores = sorted((cosine(vectors[v], train) for v in candidates), reverse=True)
    cut_off = scores[reach - 1]
    found = sum(1 for v in held if cosine(vectors[v], train) >= cut_off)
    return found / len(held), len(held)


@transaction.atomic
def lookalike_build(*, audience: Audience, now: datetime | None = None) -> LookalikeResult:
    """Score unlinked visitors against the seed segment's linked visitors and make the top
    ``reach_percent`` the audience's members (with their scores)."""
    if audience.kind != Audience.Kind.LOOKALIKE or audience.seed_segment_id is None:
        raise LookalikeError(f"audience {audience} is not a lookalike with a seed segment")
    now = now or timezone.now()
    features = visitor_categories(now)
    idf = idf_weights(features)
    vectors = {visitor: unit_vector(categories, idf) for visitor, categories in features.items()}
    seed_ids = set(
        Visitor.objects.filter(
            profile__memberships__segment_id=audience.seed_segment_id
        ).values_list("pk", flat=True)
    )
    seed = sorted(seed_ids & vectors.keys())
    if not seed:
        raise LookalikeError(
            f"the seed segment {audience.seed_segment} has no linked visitors with live "
            "category data: nothing to look like"
        )
    unlinked = set(Visitor.objects.filter(profile__isnull=True).values_list("pk", flat=True))
    candidates = sorted(unlinked & vectors.keys())
    reach = reach_size(len(candidates), audience.reach_percent)
    recall, held = holdout_recall(seed, vectors, candidates, reach, random.Random(audience.pk))
    full = centroid([vectors[v] for v in seed])
    scored = sorted(((cosine(vectors[v], full), v) for v in candidates), reverse=True)[:reach]
    audience_members_set(
        audience=audience,
        visitor_ids=[v for _, v in scored],
        scores={v: round(score, 6) for score, v in scored},
    )
    audience.seed_size, audience.lookalike_recall = len(seed), recall
    audience.save(update_fields=["seed_size", "lookalike_recall", "updated_at"])
    return LookalikeResult(len(seed), len(candidates), len(scored), recall, held)
