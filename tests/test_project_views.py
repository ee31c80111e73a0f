from django.contrib.auth import get_user_model
from django.test import TestCase
from django.urls import reverse

from projects.models import Project
from tests.base import BaseTestCase


class FirstRunTests(TestCase):
    def test_it_sends_the_first_visitor_to_sign_up(self):
        response = self.client.get("/")
        self.assertRedirects(response, reverse("signup"), fetch_redirect_response=False)

    def test_it_creates_the_first_account_and_logs_it_in(self):
        response = self.client.post(
            reverse("signup"),
            {
                "username": "ada",
                "password1": "s3cret-horse!",
                "password2": "s3cret-horse!",
            },
        )
        self.assertRedirects(response, reverse("projects:list"))
        self.assertTrue(get_user_model().objects.filter(username="ada").exists())


class ProjectViewTests(BaseTestCase):
    def test_it_lists_only_my_projects_with_counts(self):
        Project.objects.create(owner=self.bob, name="Bob's secret")
        response = self.client.get(reverse("projects:list"))
        self.assertContains(response, "Insects")
        self.assertNotContains(response, "Bob&#x27;s secret")

    def test_it_creates_a_project(self):
        response = self.client.post(
            reverse("projects:create"), {"name": "Flowers", "description": "tulips"}
        )
        project = Project.objects.get(name="Flowers")
        self.assertRedirects(response, project.get_absolute_url())
        self.assertEqual(project.owner, self.alice)

    def test_it_refuses_a_duplicate_name_ignoring_case(self):
        response = self.client.post(reverse("projects:create"), {"name": "insects"})
        self.assertContains(response, "already have a project")
        self.assertEqual(Project.objects.filter(owner=self.alice).count(), 1)

    def test_it_refuses_a_duplicate_non_ascii_name_ignoring_case(self):
        Project.objects.create(owner=self.alice, name="Été")
        Project.objects.create(owner=self.alice, name="İstanbul")
        for name in ["été", "ÉTÉ", " été ", "istanbul", "ISTANBUL"]:
            with self.subTest(name=name):
                response = self.client.post(reverse("projects:create"), {"name": name})
                self.assertContains(response, "already have a project")
        url = reverse("projects:rename", args=[self.project.pk])
        response = self.client.post(url, {"name": "ÉTÉ", "description": ""})
        self.assertContains(response, "already have a project")
        self.project.refresh_from_db()
        self.assertEqual(self.project.name, "Insects")
        self.assertEqual(Project.objects.filter(owner=self.alice).count(), 3)

    def test_it_allows_the_same_non_ascii_name_to_another_user(self):
        Project.objects.create(owner=self.bob, name="Été")
        self.client.post(reverse("projects:create"), {"name": "été"})
        project = Project.objects.get(owner=self.alice, name="été")
        self.assertEqual(project.name_key, "été")

    def test_it_renames_a_project(self):
        url = reverse("projects:rename", args=[self.project.pk])
        self.client.post(url, {"name": "Bugs", "description": ""})
        self.project.refresh_from_db()
        self.assertEqual(self.project.name, "Bugs")

    def test_it_asks_before_deleting_and_then_deletes(self):
        url = reverse("projects:delete", args=[self.project.pk])
        self.assertContains(self.client.get(url), "Delete “Insects”?")
        self.assertTrue(Project.objects.filter(pk=self.project.pk).exists())
        self.client.post(url)
        self.assertFalse(Project.objects.filter(pk=self.project.pk).exists())

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        for name in ["detail", "rename", "delete"]:
            url = reverse(f"projects:{name}", args=[self.project.pk])
            self.assertEqual(self.client.get(url).status_code, 404, name)
        self.client.post(reverse("projects:delete", args=[self.project.pk]))
        self.assertTrue(Project.objects.filter(pk=self.project.pk).exists())
