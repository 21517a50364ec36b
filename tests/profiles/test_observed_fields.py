"""Processing records the fields it sees (events, properties, traits) with their types and a
few example values, never personal ones, and writes nothing for a batch of known fields."""

import pytest

from profiles.ingest import observed
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import ObservedField
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def process(django_capture_on_commit_callbacks):
    source = SourceFactory()

    def send(*messages):
        messages_collect(source_id=source.pk, messages=list(messages))
        with django_capture_on_commit_callbacks(execute=True):
            pending_process()

    return send


def order(total, **extra):
    properties = {"total": total, "currency": "EUR", "shipping": {"method": "post"}, **extra}
    return {"type": "track", "userId": "u-1", "event": "Order Completed", "properties": properties}


def fields() -> dict:
    return {(f.kind, f.event, f.key): f for f in ObservedField.objects.all()}


def test_events_properties_and_traits_are_recorded_with_types_and_examples(process):
    process(
        order(40),
        {"type": "page", "anonymousId": "a-1", "name": "Home", "properties": {"path": "/"}},
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro", "age_band": "30-39"}},
    )

    seen = fields()
    assert seen[("event", "Order Completed", "")].types == ["track"]
    assert seen[("event", "Home", "")].types == ["page"]
    total = seen[("property", "Order Completed", "total")]
    assert (total.types, total.examples) == (["integer"], [40])
    assert seen[("property", "Order Completed", "shipping")].types == ["object"]
    assert seen[("property", "Order Completed", "shipping.method")].examples == ["post"]
    assert seen[("property", "Home", "path")].examples == ["/"]
    assert seen[("trait", "", "plan")].examples == ["pro"]


def test_personal_values_are_never_kept_as_examples(process):
    process(
        {
            "type": "identify",
            "userId": "u-1",
            "traits": {"email": "anna@example.com", "firstName": "Anna", "note": "+31612345678"},
        },
        order(10, coupon="call anna@example.com"),
    )

    seen = fields()
    for key in ("email", "firstName", "note"):
        assert seen[("trait", "", key)].examples == [], key
    assert seen[("property", "Order Completed", "coupon")].examples == []
    assert "anna" not in str([f.examples for f in seen.values()])


def test_types_and_examples_grow_across_batches_up_to_five(process):
    for total in (40, 40, 12.5, "n/a", 1, 2, 3, 4):
        process(order(total))
        observed.observed_fields_forget()  # as another process would

    total = fields()[("property", "Order Completed", "total")]
    assert total.types == ["integer", "number", "string"]
    assert total.examples == [40, 12.5, "n/a", 1, 2]


def test_a_batch_of_known_fields_writes_nothing(process, monkeypatch):
    process(order(40))
    writes = []
    monkeypatch.setattr(observed, "observed_fields_write", writes.append)

    process(order(40))
    process(order(41))  # a new example: written
    assert len(writes) == 1
    assert list(writes[0]) == [("property", "Order Completed", "total")]


def test_keys_that_cannot_be_rule_paths_or_are_too_deep_are_skipped(process):
    process(order(1, **{"a.b": 1, "x" * 101: 1, "deep": {"er": {"est": 1}}}))

    keys = {key for kind, event, key in fields() if kind == "property"}
    assert "a.b" not in keys and "x" * 101 not in keys
    assert {"deep", "deep.er"} <= keys and "deep.er.est" not in keys


def test_a_flood_of_invented_keys_stops_at_the_cap(process, monkeypatch):
    monkeypatch.setattr(observed, "MAX_FIELDS", 5)
    process(order(1, **{f"k{i}": i for i in range(20)}))
    assert ObservedField.objects.count() == 5

    process(order(2, currency="USD"))  # known fields still update
    assert fields()[("property", "Order Completed", "currency")].examples == ["EUR", "USD"]


def test_messages_of_a_shape_already_looked_at_enough_change_nothing():
    """Skipping the messages whose shape has been seen with enough examples records exactly
    what walking every message records: a new type, a whole float or a new key still shows."""
    from types import SimpleNamespace

    def viewed(**properties):
        payload = {"event": "Product Viewed", "properties": properties}
        return SimpleNamespace(type="track", payload=payload)

    messages = [viewed(sku=f"SKU-{i % 7}", price=2.5, qty=i) for i in range(300)]
    messages += [
        viewed(sku="SKU-1", price=3.0, qty=1),  # a whole float: an integer to JSON Schema
        viewed(sku="SKU-1", price="3", qty=1),
        viewed(sku="SKU-1", price=2.5, qty=True, coupon="WINTER"),
        viewed(sku="SKU-1", price=2.5, qty=1, size={"eu": 42}),
        viewed(sku="SKU-1", price=2.5, qty=1, size={"us": 9}),
    ]
    messages += [SimpleNamespace(type="identify", payload={"traits": {"plan": "pro"}})] * 100

    def walked_one_by_one() -> dict:
        seen = {}
        for message in messages:
            if message.type == "identify":
                kind, name, document = "trait", "", message.payload["traits"]
            else:
                kind, name = "property", "Product Viewed"
                document = message.payload["properties"]
                seen.setdefault(("event", name, ""), observed.Seen()).types.add("track")
            for key, value in observed.flattened(document):
                seen.setdefault((kind, name, key), observed.Seen()).add(key, value)
        return seen

    def summed(seen: dict) -> dict:
        return {key: (item.types, item.examples) for key, item in seen.items()}

    found = observed.observed_in(messages)

    assert summed(found) == summed(walked_one_by_one())
    assert found[("property", "Product Viewed", "price")].types == {"number", "integer", "string"}
    assert found[("property", "Product Viewed", "qty")].types == {"integer", "boolean"}
    assert ("property", "Product Viewed", "size.us") in found
