"""The consent ledger is append-only in the database itself, whatever the code path.

Refused: DELETE, and UPDATE of any column except ``profile_id`` (a merge re-points records to the
surviving profile; an erasure detaches them) and the proof columns an erasure anonymises. Those may
only be blanked (``identifier_value`` may also become an ``erased:`` marker), never rewritten to
another value, so the proof cannot be forged after the fact. Comparing the whole row as JSON means a
column added later is protected without touching this trigger.
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION consent_record_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    mutable CONSTANT text[] := ARRAY['profile_id', 'identifier_value', 'ip_address',
                                     'user_agent', 'form_url'];
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consent records are append-only: DELETE of record % refused', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (to_jsonb(NEW) - mutable) IS DISTINCT FROM (to_jsonb(OLD) - mutable) THEN
        RAISE EXCEPTION 'consent records are append-only: UPDATE of record % refused '
            '(only profile_id may change, and proof columns may only be anonymised)', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.identifier_value IS DISTINCT FROM OLD.identifier_value
       AND NOT (NEW.identifier_value = '' OR NEW.identifier_value LIKE 'erased:%') THEN
        RAISE EXCEPTION 'consent record %: identifier_value may only be anonymised', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.ip_address IS DISTINCT FROM OLD.ip_address AND NEW.ip_address IS NOT NULL)
       OR (NEW.user_agent IS DISTINCT FROM OLD.user_agent AND NEW.user_agent <> '')
       OR (NEW.form_url IS DISTINCT FROM OLD.form_url AND NEW.form_url <> '') THEN
        RAISE EXCEPTION 'consent record %: proof columns may only be anonymised', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER consent_record_append_only
    BEFORE UPDATE OR DELETE ON consent_consentrecord
    FOR EACH ROW EXECUTE FUNCTION consent_record_append_only();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS consent_record_append_only ON consent_consentrecord;
DROP FUNCTION IF EXISTS consent_record_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
