import pytest
from django.conf import settings
from django_q.conf import Conf


def pytest_sessionstart(session):
    """Stop at once, with one clear message, when the real photos are missing."""
    photos = settings.SHARED_DIR / "datasets" / "hymenoptera"
    if not photos.is_dir():
        pytest.exit(
            f"The tests train on the real photos in {photos}, which does not exist. "
            "Put the shared folder beside this repository (../shared) or set "
            "EXEML_SHARED_DIR to the folder that holds datasets/hymenoptera.",
            returncode=2,
        )


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
