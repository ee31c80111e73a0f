"""Shared test scaffolding: two users, a project, and the real photos."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import TestCase

from projects.models import Project


def hymenoptera_dir() -> Path:
    return Path(settings.SHARED_DIR) / "datasets" / "hymenoptera"


def real_photos(label: str, count: int, split: str = "train") -> list[Path]:
    """The first `count` JPEG photos of `label` ("ants" or "bees"), sorted by name."""
    folder = hymenoptera_dir() / split / label
    photos = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"}
    )
    return photos[:count]


class BaseTestCase(TestCase):
    """Alice owns a project; Bob is another user who must never see it."""

    @classmethod
    def setUpTestData(cls):
        User = get_user_model()
        cls.alice = User.objects.create_user("alice", password="password")
        cls.bob = User.objects.create_user("bob", password="password")
        cls.project = Project.objects.create(owner=cls.alice, name="Insects")

    def setUp(self):
        self.client.force_login(self.alice)
