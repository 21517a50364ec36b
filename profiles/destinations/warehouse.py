"""The warehouse kind: collected events copied into another PostgreSQL database, in the tables
an analyst expects from a CDP's warehouse (as Segment's): one per message type (``tracks``,
``pages``, ``screens``, ``identifies``, ``groups``, ``aliases``), plus ``profiles`` (each
profile's traits as identify calls set them) and ``identities`` (the user ids, anonymous ids
and e-mails seen for each profile), in a schema of the destination's choice.

Incremental and idempotent: each batch is one transaction in the warehouse; an event's
``messageId`` is its table's primary key, so a resent batch stores nothing twice. The tables are
created when missing. An erasure deletes the person's rows in every table (by the profile ids
every row carries). The database's host passes the outbound rule as any receiver's URL does,
and the connection goes to the address that was checked. A warehouse that cannot be reached is
retried; one that refuses the login, or a statement, is a dead letter with its message."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from psycopg import sql

from cdphub.outbound import OutboundRefused, host_addresses
from cdphub.pii import MASK
from profiles.destinations.kinds import Outgoing, SendResult, config_checked, register

# message type -> (table, its name column and where the message has it, its data column and
# where the message has it)
TABLES = {
    "track": ("tracks", "event", "event", "properties", "properties"),
    "page": ("pages", "name", "name", "properties", "properties"),
    "screen": ("screens", "name", "name", "properties", "properties"),
    "identify": ("identifies", "name", None, "traits", "traits"),
    "group": ("groups", "group_id", "groupId", "traits", "traits"),
    "alias": ("aliases", "previous_id", "previousId", "properties", "properties"),
}
AUTH_REFUSALS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def table_ddl(schema: str) -> list[sql.Composed]:
    statements = [sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))]
    for table, name_column, _, data_column, _ in TABLES.values():
        statements.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (id text PRIMARY KEY, profile_id bigint, "
                "user_id text, anonymous_id text, {} text, {} jsonb, context jsonb, "
                "timestamp timestamptz, loaded_at timestamptz NOT NULL DEFAULT now())"
            ).format(
                sql.Identifier(schema),
                sql.Identifier(table),
                sql.Identifier(name_column),
                sql.Identifier(data_column),
            )
        )
    statements.append(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.profiles (profile_id bigint PRIMARY KEY, "
            "user_id text, traits jsonb NOT NULL DEFAULT '{{}}', first_seen_at timestamptz, "
            "last_seen_at timestamptz)"
        ).format(sql.Identifier(schema))
    )
    statements.append(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.identities (kind text, value text, "
            "profile_id bigint, PRIMARY KEY (kind, value))"
        ).format(sql.Identifier(schema))
    )
    return statements


def moment(message: dict) -> datetime:
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        value = message.get(key)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    return datetime.now(UTC)


def identify_traits(message: dict) -> dict:
    traits = message.get("traits")
    if not isinstance(traits, dict) or not traits:
        traits = (message.get("context") or {}).get("traits")
    return traits if isinstance(traits, dict) else {}


def json_of(value) -> str:
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


class Warehouse:
    code = "warehouse"
    label = "Warehouse (another PostgreSQL database)"
    signs = False
    deletes = True
    receives_events = True

    def config_validate(self, config: dict) -> dict:
        config = config_checked(config, {"database_url", "schema"}, "a database_url")
        url = config.get("database_url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ValidationError(
                {"config": "database_url: like postgres://user:password@host:5432/database"}
            )
        try:
            host_addresses(parts.hostname, parts.port or 5432)
        except OutboundRefused as error:
            raise ValidationError({"config": f"database_url: {error.message}"}) from error
        schema = config.get("schema") or "cdphub"
        if not isinstance(schema, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValidationError({"config": "schema: lower-case letters, digits and _"})
        return {"database_url": url, "schema": schema}

    def config_masked(self, config: dict) -> dict:
        parts = urlsplit(config.get("database_url") or "")
        if parts.password is None:
            return config
        netloc = f"{parts.username}:{MASK}@{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        return {**config, "database_url": urlunsplit(parts._replace(netloc=netloc))}

    def send(self, outgoing: Outgoing) -> SendResult:
        config = outgoing.config
        parts = urlsplit(config["database_url"])
        try:
            address = host_addresses(parts.hostname, parts.port or 5432)[0]
        except OutboundRefused as error:
            transient = "cannot be resolved" in error.message
            outcome = SendResult.TRANSIENT if transient else SendResult.PERMANENT
            return SendResult(outcome, error=f"database refused: {error.message}")
        try:
            with (
                psycopg.connect(
                    config["database_url"],
                    hostaddr=address,
                    connect_timeout=max(1, int(settings.CDPHUB_DELIVERY_TIMEOUT_SECONDS)),
                ) as connection,
                connection.transaction(),
            ):
                self.write(connection, config["schema"], outgoing.items)
        except psycopg.OperationalError as error:
            message = str(error).strip().splitlines()[-1][:300] if str(error).strip() else ""
            refused = any(words in message for words in AUTH_REFUSALS)
            outcome = SendResult.PERMANENT if refused else SendResult.TRANSIENT
            return SendResult(outcome, error=f"the warehouse: {message}", response=message)
        except psycopg.Error as error:
            message = str(error).strip().splitlines()[0][:300]
            return SendResult(
                SendResult.PERMANENT, error=f"the warehouse refused: {message}", response=message
            )
        return SendResult(SendResult.DELIVERED)

    def write(self, connection, schema: str, items: list[dict]) -> None:
        """The batch in its order: events stored, then the erasures' people deleted from every
        table (after, so that none of their events in the same batch is left behind)."""
        for statement in table_ddl(schema):
            connection.execute(statement)
        erased: set[int] = set()
        for item in items:
            if item.get("type") in TABLES:
                self.insert(connection, schema, item)
            elif item.get("type") == "delete":
                erased.update(item.get("profileIds") or [])
        if not erased:
            return
        for table in [*(spec[0] for spec in TABLES.values()), "profiles", "identities"]:
            connection.execute(
                sql.SQL("DELETE FROM {}.{} WHERE profile_id = ANY(%s)").format(
                    sql.Identifier(schema), sql.Identifier(table)
                ),
                [sorted(erased)],
            )

    def insert(self, connection, schema: str, message: dict) -> None:
        table, name_column, name_key, data_column, data_key = TABLES[message["type"]]
        data = identify_traits(message) if message["type"] == "identify" else message.get(data_key)
        if message["type"] == "alias":
            data = {"previousId": message.get("previousId")}
        profile_id = message.get("profileId")
        at = moment(message)
        connection.execute(
            sql.SQL(
                "INSERT INTO {}.{} (id, profile_id, user_id, anonymous_id, {}, {}, context, "
                "timestamp) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s) "
                "ON CONFLICT (id) DO NOTHING"
            ).format(
                sql.Identifier(schema),
                sql.Identifier(table),
                sql.Identifier(name_column),
                sql.Identifier(data_column),
            ),
            [
                str(message.get("messageId")),
                profile_id,
                message.get("userId"),
                message.get("anonymousId"),
                str(message.get(name_key) or "") if name_key else None,
                json_of(data),
                json_of(message.get("context")),
                at,
            ],
        )
        if profile_id is None:
            return
        traits = identify_traits(message) if message["type"] == "identify" else {}
        connection.execute(
            sql.SQL(
                "INSERT INTO {}.profiles AS p (profile_id, user_id, traits, first_seen_at, "
                "last_seen_at) VALUES (%s, %s, %s::jsonb, %s, %s) ON CONFLICT (profile_id) DO "
                "UPDATE SET traits = p.traits || EXCLUDED.traits, "
                "user_id = coalesce(EXCLUDED.user_id, p.user_id), "
                "first_seen_at = least(p.first_seen_at, EXCLUDED.first_seen_at), "
                "last_seen_at = greatest(p.last_seen_at, EXCLUDED.last_seen_at)"
            ).format(sql.Identifier(schema)),
            [profile_id, message.get("userId"), json_of(traits), at, at],
        )
        seen = [("user_id", message.get("userId")), ("anonymous_id", message.get("anonymousId"))]
        if isinstance(traits.get("email"), str):
            seen.append(("email", traits["email"].strip().lower()))
        for kind, value in seen:
            if value:
                connection.execute(
                    sql.SQL(
                        "INSERT INTO {}.identities (kind, value, profile_id) VALUES (%s, %s, %s) "
                        "ON CONFLICT (kind, value) DO UPDATE SET profile_id = EXCLUDED.profile_id"
                    ).format(sql.Identifier(schema)),
                    [kind, str(value), profile_id],
                )


register(Warehouse())
