"""Project and label names unique by name_key (casefolded in Python), not by
the database's LOWER(), which folds only ASCII on SQLite."""

from django.conf import settings
from django.db import migrations, models


def fill_name_keys(apps, schema_editor):
    from projects.models import name_key

    for model_name in ("Project", "Label"):
        model = apps.get_model("projects", model_name)
        for row in model.objects.only("pk", "name").iterator():
            model.objects.filter(pk=row.pk).update(name_key=name_key(row.name))


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="name_key",
            field=models.CharField(
                db_index=True, default="", editable=False, max_length=300
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="label",
            name="name_key",
            field=models.CharField(
                db_index=True, default="", editable=False, max_length=96
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_name_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="project", name="project_name_unique_per_owner"
        ),
        migrations.RemoveConstraint(
            model_name="label", name="label_name_unique_per_project"
        ),
        migrations.AddConstraint(
            model_name="project",
            constraint=models.UniqueConstraint(
                fields=("owner", "name_key"), name="project_name_key_unique_per_owner"
            ),
        ),
        migrations.AddConstraint(
            model_name="label",
            constraint=models.UniqueConstraint(
                fields=("project", "name_key"), name="label_name_key_unique_per_project"
            ),
        ),
    ]
