import time

from django.db import migrations

# Generous: the test releases the hold as soon as it has seen the other release waiting.
HOLD_LIMIT_SECONDS = 120

# Held inside one SQL statement on the server instead (as a long ALTER, UPDATE or CREATE
# INDEX holds a migration): its client process then sends nothing while it waits.
HOLD_IN_SQL = f"""
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '{HOLD_LIMIT_SECONDS} seconds';
BEGIN
    WHILE EXISTS (SELECT 1 FROM release_probe_switch WHERE name = 'hold-in-sql') LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the test never released the hold';
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END $$
"""


def hold_while_switched_on(apps, schema_editor):
    Switch = apps.get_model("release_probe", "Switch")
    if schema_editor.connection.vendor == "postgresql" and (
        Switch.objects.filter(name="hold-in-sql").exists()
    ):
        schema_editor.execute(HOLD_IN_SQL)
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while Switch.objects.filter(name="hold").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the test never released the hold")
        time.sleep(0.2)


class Migration(migrations.Migration):
    # Not atomic: each poll must see the test's commit that turns the switch off.
    atomic = False
    dependencies = [("release_probe", "0003_widget_colour")]
    operations = [migrations.RunPython(hold_while_switched_on, migrations.RunPython.noop)]
