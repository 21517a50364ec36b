"""The shapes of what sources send, for the OpenAPI schema: the message types of the Segment
spec and their typed traits and properties. Reserved traits and the e-commerce and page
properties are typed; any other key is allowed (``additionalProperties``), as the spec allows.
"""

from __future__ import annotations

STRING = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
DATE_TIME = {"type": "string", "format": "date-time"}

ADDRESS = {
    "type": "object",
    "properties": {
        "street": STRING,
        "city": STRING,
        "postalCode": STRING,
        "state": STRING,
        "country": STRING,
    },
    "additionalProperties": {},
}

TRAITS = {
    "type": "object",
    "description": "Given traits. The spec's reserved traits are typed; any other key is kept. "
    "An e-mail or phone is normalised and becomes an identifier.",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "phone": {"type": "string", "description": "Stored in E.164 (+31612345678)."},
        "firstName": STRING,
        "lastName": STRING,
        "name": STRING,
        "username": STRING,
        "title": STRING,
        "gender": STRING,
        "age": INTEGER,
        "birthday": {"type": "string", "format": "date"},
        "address": ADDRESS,
        "company": {
            "type": "object",
            "properties": {"name": STRING, "id": STRING, "industry": STRING, "plan": STRING},
            "additionalProperties": {},
        },
        "plan": STRING,
        "createdAt": DATE_TIME,
        "website": {"type": "string", "format": "uri"},
        "avatar": {"type": "string", "format": "uri"},
    },
    "additionalProperties": {},
}

PRODUCT = {
    "type": "object",
    "properties": {
        "product_id": STRING,
        "sku": STRING,
        "name": STRING,
        "category": STRING,
        "brand": STRING,
        "price": NUMBER,
        "quantity": INTEGER,
    },
    "additionalProperties": {},
}

PROPERTIES = {
    "type": "object",
    "description": "The event's properties. The e-commerce spec's and a page's are typed; any "
    "other key is kept. `revenue` (or `total`) of `Order Completed` feeds lifetime value.",
    "properties": {
        "order_id": STRING,
        "revenue": NUMBER,
        "total": NUMBER,
        "currency": {"type": "string", "description": "ISO 4217 (EUR)."},
        "products": {"type": "array", "items": PRODUCT},
        **PRODUCT["properties"],
        "url": {"type": "string", "format": "uri"},
        "path": STRING,
        "title": STRING,
        "referrer": STRING,
        "search": STRING,
    },
    "additionalProperties": {},
}

COMPUTED_TRAITS = {
    "type": "object",
    "description": "Computed from events by the hub (read-only); the traits marketers define "
    "sit beside these, under their keys.",
    "properties": {
        "lifetime_value": NUMBER,
        "order_count": INTEGER,
        "average_order_value": {"type": "number", "nullable": True},
        "first_order_at": {**DATE_TIME, "nullable": True},
        "last_order_at": {**DATE_TIME, "nullable": True},
        "first_seen_at": {**DATE_TIME, "nullable": True},
        "last_seen_at": {**DATE_TIME, "nullable": True},
        "event_counts": {
            "type": "object",
            "description": "Per event name, its count over the last 7, 30 and 90 days.",
            "additionalProperties": {
                "type": "object",
                "properties": {"7d": INTEGER, "30d": INTEGER, "90d": INTEGER},
            },
        },
        # Without orders there is no RFM: null.
        "rfm_recency": {"type": "integer", "minimum": 1, "maximum": 5, "nullable": True},
        "rfm_frequency": {"type": "integer", "minimum": 1, "maximum": 5, "nullable": True},
        "rfm_monetary": {"type": "integer", "minimum": 1, "maximum": 5, "nullable": True},
        "rfm_score": {"type": "string", "example": "545", "nullable": True},
        "churn_risk": {"type": "string", "enum": ["low", "medium", "high"], "nullable": True},
    },
    "additionalProperties": {},
}

COMMON = {
    "userId": STRING,
    "anonymousId": STRING,
    "messageId": {"type": "string", "description": "De-duplicates retries (30 days)."},
    "timestamp": DATE_TIME,
    "sentAt": DATE_TIME,
    "context": {"type": "object", "additionalProperties": True},
    "integrations": {"type": "object", "additionalProperties": True},
}


def as_stored(schema: dict, top: bool = True) -> dict:
    """``schema`` as the hub answers it: the same keys, described, but not typed. Traits and
    properties are kept as sources sent them (a ``title`` sent as a number stays a number),
    so an answer promises their names, not their types."""
    loose = {key: schema[key] for key in ("description", "readOnly", "nullable") if key in schema}
    typed = schema.get("type")
    if typed and typed != "object":
        shown = f"{typed} ({schema['format']})" if "format" in schema else typed
        article = "an" if shown[0] in "aeiou" else "a"
        loose["description"] = f"{schema.get('description', '')} Usually {article} {shown}."
        loose["description"] = loose["description"].strip()
    if "properties" in schema:
        if top:  # the document itself is an object; what is inside is as sent
            loose["type"] = "object"
            loose["additionalProperties"] = {}
        nested = schema["properties"].items()
        loose["properties"] = {key: as_stored(value, top=False) for key, value in nested}
    return loose


def message(kind: str, **fields) -> dict:
    return {
        "type": "object",
        "description": f"A {kind} message: userId or anonymousId is required.",
        "properties": {"type": {"type": "string", "enum": [kind]}, **COMMON, **fields},
        "additionalProperties": {},
    }


MESSAGES = {
    "track": message("track", event=STRING, properties=PROPERTIES),
    "identify": message("identify", traits=TRAITS),
    "page": message("page", name=STRING, category=STRING, properties=PROPERTIES),
    "screen": message("screen", name=STRING, category=STRING, properties=PROPERTIES),
    "group": message("group", groupId=STRING, traits={"type": "object"}),
    "alias": message("alias", previousId=STRING),
}

BATCH = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": {"oneOf": list(MESSAGES.values())}},
        "context": COMMON["context"],
        "integrations": COMMON["integrations"],
        "writeKey": {"type": "string", "description": "The write key, when not in the header."},
    },
}


def request_schema(message_type: str | None) -> dict:
    """The request body of a collection endpoint: one message of its type, or a batch."""
    return BATCH if message_type is None else MESSAGES[message_type]
