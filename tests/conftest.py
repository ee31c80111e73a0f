import pytest
from django_q.conf import Conf


@pytest.fixture(autouse=True)
def _isolated_environment(settings, tmp_path, monkeypatch):
    """Give every test its own media folder and run queued tasks in-process."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Static files are not collected for the test run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    monkeypatch.setattr(Conf, "SYNC", True)
