from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.base import BaseTestCase


class ApiTokenViewTests(BaseTestCase):
    def api_answer(self, key: str):
        """What the projects API answers to a program holding this token."""
        program = Client()
        return program.get(
            reverse("api-project-list"), HTTP_AUTHORIZATION=f"Token {key}"
        )

    def api_status(self, key: str) -> int:
        return self.api_answer(key).status_code

    def test_it_shows_a_token_made_on_the_first_visit(self):
        self.assertFalse(Token.objects.filter(user=self.alice).exists())

        response = self.client.get(reverse("api_token"))

        token = Token.objects.get(user=self.alice)
        self.assertContains(response, f'value="{token.key}"')
        self.assertContains(
            response,
            f'curl -H "Authorization: Token {token.key}" -F images=@photo.jpg '
            "http://testserver/api/services/SERVICE_ID/predict",
        )
        self.assertEqual(self.api_status(token.key), 200)

    def test_it_shows_the_same_token_on_the_next_visit(self):
        first = self.client.get(reverse("api_token")).context["token"].key
        second = self.client.get(reverse("api_token")).context["token"].key
        self.assertEqual(first, second)

    def test_it_regenerates_the_token_and_the_old_one_stops_working(self):
        old = Token.objects.create(user=self.alice).key

        response = self.client.post(reverse("api_token"), follow=True)

        new = Token.objects.get(user=self.alice).key
        self.assertNotEqual(new, old)
        self.assertContains(response, "the old one no longer works")
        self.assertContains(response, f'value="{new}"')
        refused = self.api_answer(old)
        self.assertEqual(refused.status_code, 403)
        self.assertEqual(refused.json(), {"detail": "Invalid token."})
        self.assertEqual(self.api_status(new), 200)

    def test_it_leaves_other_users_tokens_alone(self):
        bobs = Token.objects.create(user=self.bob).key
        self.client.post(reverse("api_token"))
        self.assertEqual(Token.objects.get(user=self.bob).key, bobs)

    def test_it_sends_a_logged_out_visitor_to_log_in(self):
        self.client.logout()
        url = reverse("api_token")

        for response in (self.client.get(url), self.client.post(url)):
            self.assertRedirects(
                response,
                f"{reverse('login')}?next={url}",
                fetch_redirect_response=False,
            )
        self.assertFalse(Token.objects.exists())

    def test_the_top_bar_links_to_it(self):
        response = self.client.get(reverse("projects:list"))
        self.assertContains(response, f'<a href="{reverse("api_token")}">API token</a>')
