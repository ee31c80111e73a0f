from django.db import migrations, models


def copy_source_versions(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    runs = TrainingRun.objects.filter(incremental_from__isnull=False).select_related(
        "incremental_from"
    )
    for run in runs:
        run.incremental_from_version = run.incremental_from.version
        run.save(update_fields=["incremental_from_version"])


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="incremental_from_version",
            field=models.CharField(blank=True, max_length=8),
        ),
        migrations.RunPython(copy_source_versions, migrations.RunPython.noop),
    ]
