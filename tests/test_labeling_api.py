from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from projects import storage
from projects.models import Image, Label, Project
from tests.base import BaseTestCase
from tests.image_fixtures import make_image, make_images


class LabelApiTests(BaseTestCase):
    def setUp(self):
        self.client = APIClient()
        self.client.force_authenticate(self.alice)
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(project=self.project, name="bees")
        self.base = f"/api/projects/{self.project.pk}"

    def test_it_lists_labels_with_image_counts(self):
        make_images(self.project, 3, label=self.ants)
        make_image(self.project, label=self.ants, trashed_at="2024-01-01T00:00Z")
        response = self.client.get(f"{self.base}/labels")
        self.assertEqual(response.status_code, 200)
        rows = {r["name"]: r["image_count"] for r in response.json()["results"]}
        self.assertEqual(rows, {"ants": 3, "bees": 0})

    def test_it_creates_a_label(self):
        response = self.client.post(
            f"{self.base}/labels", {"name": "wasps", "color": "#AABBCC"}, format="json"
        )
        self.assertEqual(response.status_code, 201)
        body = response.json()
        self.assertEqual((body["name"], body["color"]), ("wasps", "#aabbcc"))
        self.assertEqual(body["image_count"], 0)
        self.assertTrue(self.project.labels.filter(pk=body["id"]).exists())

    def test_it_refuses_a_duplicate_or_too_long_name(self):
        response = self.client.post(
            f"{self.base}/labels", {"name": "Ants"}, format="json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("already has a label named “Ants”", response.json()["name"][0])

        response = self.client.post(
            f"{self.base}/labels", {"name": "y" * 40}, format="json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("at most 32 characters", response.json()["name"][0])
        self.assertEqual(self.project.labels.count(), 2)

    def test_it_renames_and_recolours_a_label(self):
        images = make_images(self.project, 2, label=self.ants)
        response = self.client.patch(
            f"{self.base}/labels/{self.ants.pk}",
            {"name": "formicidae", "color": "#123456"},
            format="json",
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["image_count"], 2)
        self.ants.refresh_from_db()
        self.assertEqual((self.ants.name, self.ants.color), ("formicidae", "#123456"))
        self.assertEqual(
            set(
                Image.objects.filter(pk__in=[i.pk for i in images]).values_list(
                    "label__name", flat=True
                )
            ),
            {"formicidae"},
        )

    def test_it_deletes_a_label_in_each_mode(self):
        unlabeled = make_images(self.project, 2, label=self.ants)
        response = self.client.delete(
            f"{self.base}/labels/{self.ants.pk}?mode=label_only"
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["images"], 2)
        self.assertEqual(self.project.images.alive().unlabeled().count(), 2)

        trashed = make_images(self.project, 2, label=self.bees)
        response = self.client.delete(
            f"{self.base}/labels/{self.bees.pk}",
            {"mode": "label_and_images"},
            format="json",
        )
        self.assertEqual(response.json()["mode"], "label_and_images")
        self.assertEqual(
            set(self.project.images.alive()), set(unlabeled), "trashed are hidden"
        )
        self.assertTrue(storage.media_path(trashed[0].file).exists())

        wasps = Label.objects.create(project=self.project, name="wasps")
        gone = make_image(self.project, label=wasps)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.delete(
                f"{self.base}/labels/{wasps.pk}?mode=label_images_and_files"
            )
        self.assertEqual(response.json()["images"], 1)
        self.assertFalse(Image.objects.filter(pk=gone.pk).exists())
        self.assertFalse(storage.media_path(gone.file).exists())

    def test_it_refuses_an_unknown_delete_mode(self):
        response = self.client.delete(f"{self.base}/labels/{self.ants.pk}?mode=all")
        self.assertEqual(response.status_code, 400)
        self.assertIn("mode", response.json())
        self.assertTrue(Label.objects.filter(pk=self.ants.pk).exists())

    def test_it_merges_labels_by_name_or_id(self):
        make_images(self.project, 2, label=self.ants)
        make_images(self.project, 1, label=self.bees)
        response = self.client.post(
            f"{self.base}/labels/{self.ants.pk}/merge", {"into": "BEES"}, format="json"
        )
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["moved"], 2)
        self.assertEqual(body["into"]["image_count"], 3)
        self.assertEqual(body["label_counts"], {"bees": 3})

        response = self.client.post(
            f"{self.base}/labels/{self.bees.pk}/merge",
            {"into": self.bees.pk},
            format="json",
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json()["into"], ["Choose another label to merge into."]
        )

    def test_it_assigns_a_label_to_many_images_by_id_or_name(self):
        images = make_images(self.project, 30)
        ids = [i.pk for i in images[:20]]
        response = self.client.post(
            f"{self.base}/labels/assign",
            {"image_ids": ids, "label": "ants"},
            format="json",
        )
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["updated"], 20)
        self.assertEqual(body["label"], self.ants.pk)
        self.assertEqual(body["label_counts"], {"ants": 20, "bees": 0})
        self.assertEqual(body["readiness"]["missing"], ["bees needs 5 more images"])
        labeled = Image.objects.filter(label=self.ants, labeled_by=self.alice)
        self.assertEqual(labeled.count(), 20)

        response = self.client.post(
            f"{self.base}/labels/assign",
            {"image_ids": ids[:5], "label": None},
            format="json",
        )
        self.assertEqual(response.json()["updated"], 5)
        self.assertEqual(self.project.label_counts()["ants"], 15)

    def test_it_assigns_a_label_to_every_image_matching_a_filter(self):
        make_images(self.project, 4, label=self.ants)
        unlabeled = make_images(self.project, 6)
        response = self.client.post(
            f"{self.base}/labels/assign",
            {"filter": {"status": "unlabeled"}, "label": self.bees.pk},
            format="json",
        )
        self.assertEqual(response.json()["updated"], 6)
        self.assertEqual(set(Image.objects.filter(label=self.bees)), set(unlabeled))
        self.assertEqual(self.project.label_counts(), {"ants": 4, "bees": 6})

    def test_it_refuses_image_ids_from_another_project(self):
        mine = make_image(self.project)
        theirs = make_image(Project.objects.create(owner=self.bob, name="Bob's"))
        response = self.client.post(
            f"{self.base}/labels/assign",
            {"image_ids": [mine.pk, theirs.pk], "label": self.ants.pk},
            format="json",
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json()["image_ids"],
            [f"These images are not in this project: {theirs.pk}."],
        )
        self.assertFalse(Image.objects.exclude(label=None).exists())

    def test_it_refuses_an_image_id_too_large_for_the_database(self):
        image = make_image(self.project)
        response = self.client.post(
            f"{self.base}/labels/assign",
            {"image_ids": [image.pk, 2**63], "label": self.ants.pk},
            format="json",
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(),
            {
                "image_ids": [
                    "Not a valid image id: “9223372036854775808”. An id is a whole "
                    "number from 1 to 9223372036854775807."
                ]
            },
        )
        image.refresh_from_db()
        self.assertIsNone(image.label)

    def test_it_refuses_bad_assignment_requests_with_a_message(self):
        image = make_image(self.project)
        foreign_label = Label.objects.create(
            project=Project.objects.create(owner=self.bob, name="Bob's"), name="x"
        )
        cases = [
            ({"label": self.ants.pk}, "non_field_errors"),
            (
                {"image_ids": [image.pk], "filter": {}, "label": self.ants.pk},
                "non_field_errors",
            ),
            ({"image_ids": [image.pk]}, "label"),
            ({"image_ids": [image.pk], "label": foreign_label.pk}, "label"),
            ({"image_ids": [image.pk], "label": "wasps"}, "label"),
            ({"image_ids": [image.pk], "label": True}, "label"),
            ({"image_ids": ["x"], "label": "ants"}, "image_ids"),
            ({"filter": {"status": "maybe"}, "label": "ants"}, "filter"),
        ]
        for data, field in cases:
            response = self.client.post(
                f"{self.base}/labels/assign", data, format="json"
            )
            self.assertEqual(response.status_code, 400, data)
            self.assertIn(field, response.json(), data)
        image.refresh_from_db()
        self.assertIsNone(image.label)

    def test_it_accepts_a_token(self):
        token = Token.objects.create(user=self.alice)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        response = client.get(f"{self.base}/readiness")
        self.assertEqual(response.status_code, 200)
        self.assertFalse(response.json()["ready"])

    def test_it_answers_404_for_another_users_project_on_every_endpoint(self):
        image = make_image(self.project)
        bob = APIClient()
        bob.force_authenticate(self.bob)
        label = f"{self.base}/labels/{self.ants.pk}"
        requests = [
            ("get", f"{self.base}/labels", None),
            ("post", f"{self.base}/labels", {"name": "wasps"}),
            ("get", label, None),
            ("patch", label, {"name": "stolen"}),
            ("put", label, {"name": "stolen", "color": "#000000"}),
            ("delete", f"{label}?mode=label_images_and_files", None),
            ("post", f"{label}/merge", {"into": self.bees.pk}),
            (
                "post",
                f"{self.base}/labels/assign",
                {"image_ids": [image.pk], "label": 1},
            ),
            ("get", f"{self.base}/readiness", None),
        ]
        for method, url, data in requests:
            response = getattr(bob, method)(url, data, format="json")
            self.assertEqual(response.status_code, 404, f"{method} {url}")

        # A label of Alice's looked up under Bob's own project is 404 too.
        own = Project.objects.create(owner=self.bob, name="Bob's")
        response = bob.get(f"/api/projects/{own.pk}/labels/{self.ants.pk}")
        self.assertEqual(response.status_code, 404)

        self.ants.refresh_from_db()
        self.assertEqual(self.ants.name, "ants")
        self.assertEqual(self.project.labels.count(), 2)
        image.refresh_from_db()
        self.assertIsNone(image.label)

    def test_it_requires_authentication(self):
        response = APIClient().get(f"{self.base}/labels")
        self.assertIn(response.status_code, (401, 403))


class StrictLabelRequestTests(BaseTestCase):
    """A typo in a request is refused with a message, never read as a wider
    selection or a default."""

    def setUp(self):
        self.client = APIClient()
        self.client.force_authenticate(self.alice)
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(project=self.project, name="bees")
        self.base = f"/api/projects/{self.project.pk}"
        self.labeled = make_images(self.project, 3, label=self.bees)
        self.unlabeled = make_images(self.project, 2)

    def labels_now(self) -> dict[int, int | None]:
        return dict(self.project.images.values_list("pk", "label_id"))

    def assign(self, data):
        return self.client.post(f"{self.base}/labels/assign", data, format="json")

    def test_it_refuses_unknown_filter_keys_and_lists_the_allowed_ones(self):
        before = self.labels_now()
        response = self.assign(
            {"filter": {"stauts": "unlabeled", "lable": 99}, "label": "ants"}
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(),
            {
                "filter": {
                    "non_field_errors": [
                        "The filter has unknown keys “lable”, “stauts”; the allowed "
                        "keys are “status”, “label”, “q”."
                    ]
                }
            },
        )
        self.assertEqual(self.labels_now(), before)

    def test_it_refuses_filter_values_of_the_wrong_kind(self):
        before = self.labels_now()
        cases = [
            ({"q": ["a", "b"]}, "q", "Must be text (a JSON string)."),
            ({"q": 5}, "q", "Must be text (a JSON string)."),
            (
                {"status": "unlabelled"},
                "status",
                "Unknown status “unlabelled”: use all, unlabeled or labeled.",
            ),
            ({"label": 999999}, "label", "No label “999999” in this project."),
            ({"label": "wasps"}, "label", "No label “wasps” in this project."),
            (
                {"label": None},
                "label",
                "Leave “label” out to match any label; images without a label are "
                "selected with status “unlabeled”.",
            ),
        ]
        for selection, field, message in cases:
            with self.subTest(selection=selection):
                response = self.assign({"filter": selection, "label": "ants"})
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json(), {"filter": {field: [message]}})
        response = self.assign({"filter": ["status"], "label": "ants"})
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "The filter must be a JSON object",
            response.json()["filter"]["non_field_errors"][0],
        )
        self.assertEqual(self.labels_now(), before)

    def test_it_refuses_unknown_keys_in_the_request_itself(self):
        before = self.labels_now()
        response = self.assign(
            {"image_ids": [self.unlabeled[0].pk], "label": "ants", "force": True}
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json()["non_field_errors"],
            [
                "The request has unknown key “force”; the allowed keys are "
                "“image_ids”, “filter”, “label”."
            ],
        )
        self.assertEqual(self.labels_now(), before)

    def test_it_selects_by_a_label_given_by_name_and_by_file_name(self):
        response = self.assign(
            {"filter": {"status": "labeled", "label": "BEES", "q": ""}, "label": None}
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["updated"], 3)
        self.assertFalse(self.project.images.exclude(label=None).exists())

    def test_it_refuses_a_delete_body_it_cannot_read(self):
        make_images(self.project, 2, label=self.ants)
        url = f"{self.base}/labels/{self.ants.pk}"
        cases = [
            (
                ["label_images_and_files"],
                "The body of a label delete must be a JSON object with the keys "
                "“mode”.",
            ),
            (
                {"mdoe": "label_only"},
                "The body of a label delete has unknown key “mdoe”; the allowed "
                "keys are “mode”.",
            ),
        ]
        for body, message in cases:
            with self.subTest(body=body):
                response = self.client.delete(url, body, format="json")
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json(), {"non_field_errors": [message]})

        response = self.client.delete(url, {"mode": "everything"}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("mode", response.json())
        response = self.client.delete(
            f"{url}?mode=label_only", {"mode": "label_and_images"}, format="json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(),
            {"mode": ["The body and the query string ask for different modes."]},
        )
        self.assertTrue(Label.objects.filter(pk=self.ants.pk).exists())
        self.assertEqual(self.project.images.alive().filter(label=self.ants).count(), 2)

    def test_it_takes_the_delete_mode_from_the_body_or_the_query_string(self):
        make_images(self.project, 2, label=self.ants)
        response = self.client.delete(
            f"{self.base}/labels/{self.ants.pk}?mode=label_and_images"
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["mode"], "label_and_images")
        self.assertEqual(self.project.images.exclude(trashed_at=None).count(), 2)

        response = self.client.delete(
            f"{self.base}/labels/{self.bees.pk}", {}, format="json"
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["mode"], "label_only")
        self.assertEqual(self.project.images.alive().unlabeled().count(), 5)

    def test_it_refuses_label_names_that_break_the_rule(self):
        cases = [
            ("../../bees", "A label name cannot contain “/” (“../../bees”)"),
            ("ÄNTS", None),
            ("bees\n", "already has a label named “bees”"),
            ("BEES", "already has a label named “BEES”"),
        ]
        Label.objects.create(project=self.project, name="änts")
        for name, message in cases:
            with self.subTest(name=name):
                response = self.client.post(
                    f"{self.base}/labels", {"name": name}, format="json"
                )
                self.assertEqual(response.status_code, 400)
                if message:
                    self.assertIn(message, response.json()["name"][0])
        self.assertEqual(self.project.labels.count(), 3)
