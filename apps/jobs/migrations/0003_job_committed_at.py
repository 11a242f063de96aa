from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_job_status_heartbeat_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="committed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
