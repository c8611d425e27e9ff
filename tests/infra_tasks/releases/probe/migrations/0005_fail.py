from django.db import migrations


def fail_while_switched_on(apps, schema_editor):
    Switch = apps.get_model("release_probe", "Switch")
    if Switch.objects.filter(name="fail").exists():
        raise RuntimeError("probe migration 0005 fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("release_probe", "0004_hold")]
    operations = [migrations.RunPython(fail_while_switched_on, migrations.RunPython.noop)]
