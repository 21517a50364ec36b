"""SQL functions the rule compiler and computed traits use to read JSON values by type without
failing on values of another type (a trait "age": "n/a" must not break a segment)."""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION cdphub_jsonb_numeric(value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(value)
    WHEN 'number' THEN value::numeric
    WHEN 'string' THEN CASE
      WHEN (value #>> '{}') ~ '^\s*[-+]?[0-9]+(\.[0-9]+)?\s*$' THEN btrim(value #>> '{}')::numeric
    END
  END
$$;

CREATE OR REPLACE FUNCTION cdphub_jsonb_timestamptz(value jsonb) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
  IF jsonb_typeof(value) IS DISTINCT FROM 'string'
     OR (value #>> '{}') !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' THEN
    RETURN NULL;
  END IF;
  RETURN (value #>> '{}')::timestamptz;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS cdphub_jsonb_numeric(jsonb);
DROP FUNCTION IF EXISTS cdphub_jsonb_timestamptz(jsonb);
"""


class Migration(migrations.Migration):
    dependencies = [("profiles", "0002_segments_refresh_history")]

    operations = [migrations.RunSQL(CREATE, DROP)]
