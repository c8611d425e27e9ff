import time

from django.db import migrations

# Generous: the test releases the hold as soon as it has seen the other release waiting.
HOLD_LIMIT_SECONDS = 120


def hold_while_switched_on(apps, schema_editor):
    Switch = apps.get_model("release_probe", "Switch")
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
