from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("release_probe", "0002_remove_widget_legacy_code")]
    operations = [
        migrations.AddField(
            model_name="widget",
            name="colour",
            field=models.CharField(blank=True, db_default="", max_length=20),
        )
    ]
