from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.views import GRID_PAGE_SIZE
from projects.models import Image, Label, Project
from tests.base import BaseTestCase
from tests.image_fixtures import make_image, make_images

HTMX = {"HTTP_HX_REQUEST": "true"}


class LabelingPageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(
            project=self.project, name="bees", color="#f58231"
        )

    def url(self, name, *args):
        return reverse(f"labeling:{name}", args=[self.project.pk, *args])

    def assign(self, client=None, **data):
        return (client or self.client).post(self.url("assign"), data, **HTMX)

    def test_it_shows_the_grid_the_label_panel_and_readiness(self):
        make_images(self.project, 3, label=self.ants)
        make_image(self.project, name="lonely.jpg")
        response = self.client.get(self.url("label"))
        self.assertContains(response, 'id="grid-area"')
        self.assertContains(response, 'name="image"', count=4)
        self.assertContains(response, "lonely.jpg")
        self.assertContains(response, "4 images, 1 unlabeled.")
        self.assertContains(response, "ants needs 2 more images")
        self.assertContains(response, "bees needs 5 more images")
        self.assertEqual(response.context["section"], "label")

    def test_it_labels_20_selected_images_in_one_request(self):
        images = make_images(self.project, 25)
        chosen = [image.pk for image in images[:20]]

        response = self.assign(image=chosen, assign=self.bees.pk, page=1)

        self.assertEqual(response.status_code, 200)
        labeled = Image.objects.filter(label=self.bees)
        self.assertEqual(sorted(labeled.values_list("pk", flat=True)), sorted(chosen))
        self.assertFalse(labeled.filter(labeled_by=None).exists())
        self.assertFalse(labeled.filter(labeled_at=None).exists())
        # The grid comes back with the new labels on the tiles...
        self.assertContains(response, '<div id="grid-area">', count=1)
        self.assertContains(response, 'style="background: #f58231">bees</span>', 20)
        self.assertContains(response, "unlabeled</span>", 5)
        # ...and the label counts and readiness are swapped in out of band.
        panel = response.content.decode().split('id="label-panel"')[1]
        self.assertIn('hx-swap-oob="true"', panel.split(">")[0])
        self.assertIn('<span class="count" title="Images with this label">20', panel)
        self.assertIn("25 images, 5 unlabeled.", panel)
        self.assertContains(response, 'id="readiness" aria-live="polite" hx-swap-oob')
        self.assertContains(response, "ants needs 5 more images")
        self.assertContains(response, "20 images labeled “bees”.")

    def test_it_uses_as_many_queries_for_20_images_as_for_2(self):
        images = make_images(self.project, 22)
        self.client.get(self.url("label"))  # the first request checks for users
        with CaptureQueriesContext(connection) as few:
            self.assign(image=[i.pk for i in images[:2]], assign=self.ants.pk)
        with CaptureQueriesContext(connection) as many:
            self.assign(image=[i.pk for i in images[2:]], assign=self.bees.pk)
        self.assertEqual(len(few), len(many))

    def test_it_changes_and_removes_the_label_of_a_selection(self):
        images = make_images(self.project, 4, label=self.ants)
        ids = [i.pk for i in images[:2]]
        self.assign(image=ids, assign=self.bees.pk)
        self.assertEqual(self.project.label_counts(), {"ants": 2, "bees": 2})

        response = self.assign(image=ids, assign="")
        self.assertContains(response, "Label removed from 2 images.")
        self.assertEqual(self.project.label_counts(), {"ants": 2, "bees": 0})
        removed = Image.objects.filter(pk__in=ids)
        self.assertEqual(list(removed.values_list("labeled_at", flat=True)), [None] * 2)

    def test_it_labels_all_images_matching_the_filter_across_pages(self):
        matching = make_images(self.project, GRID_PAGE_SIZE + 5)
        Image.objects.filter(pk__in=[i.pk for i in matching]).update(
            original_name="hive_cell.jpg"
        )
        others = make_images(self.project, 3)
        already = make_image(self.project, name="hive_old.jpg", label=self.ants)

        response = self.assign(
            all_matching="1",
            status="unlabeled",
            q="HIVE",
            assign=self.bees.pk,
            image=[matching[-1].pk],
        )

        self.assertContains(response, f"{GRID_PAGE_SIZE + 5} images labeled “bees”.")
        self.assertEqual(Image.objects.filter(label=self.bees).count(), len(matching))
        for image in others:
            image.refresh_from_db()
            self.assertIsNone(image.label)
        already.refresh_from_db()
        self.assertEqual(already.label, self.ants)
        # The grid keeps the filter: no unlabeled hive photo is left to show.
        self.assertContains(response, "No image matches this filter.")

    def test_it_refuses_a_select_all_with_a_filter_it_cannot_read(self):
        labeled = make_images(self.project, 2, label=self.ants)
        unlabeled = make_images(self.project, 2)
        cases = [
            ({"status": "unlabelled"}, "Unknown status “unlabelled”"),
            ({"label": "99999"}, "No such label in this project."),
            ({"label": "ants"}, "No such label in this project."),
        ]
        for selection, message in cases:
            with self.subTest(selection=selection):
                data = {"status": "", "label": "", "q": "", **selection}
                response = self.assign(all_matching="1", assign=self.bees.pk, **data)
                self.assertContains(response, message, 1, 422)
        self.assertEqual(
            dict(self.project.images.values_list("pk", "label_id")),
            {
                **{image.pk: self.ants.pk for image in labeled},
                **{image.pk: None for image in unlabeled},
            },
        )

    def test_it_refuses_image_ids_from_another_project(self):
        mine = make_image(self.project)
        other_project = Project.objects.create(owner=self.bob, name="Bob's")
        theirs = make_image(other_project)

        response = self.assign(image=[mine.pk, theirs.pk], assign=self.ants.pk)

        self.assertEqual(response.status_code, 422)
        self.assertContains(
            response, f"These images are not in this project: {theirs.pk}.", 1, 422
        )
        self.assertEqual(response["HX-Retarget"], "#labeling-status")
        self.assertFalse(Image.objects.exclude(label=None).exists())

    def test_it_refuses_an_image_id_that_is_not_a_plain_number(self):
        image = make_image(self.project)
        for bad in ["9223372036854775808", "²", "1_0", "-3", "abc"]:
            with self.subTest(bad=bad):
                response = self.assign(image=[image.pk, bad], assign=self.ants.pk)
                self.assertContains(
                    response,
                    f"Not a valid image id: “{bad}”. An id is a whole number from 1 "
                    "to 9223372036854775807.",
                    1,
                    422,
                )
                self.assertEqual(response["HX-Retarget"], "#labeling-status")

        response = self.client.post(
            self.url("assign"), {"image": [image.pk, "²"], "assign": self.ants.pk}
        )
        self.assertRedirects(response, self.url("label"))
        image.refresh_from_db()
        self.assertIsNone(image.label)

    def test_it_refuses_an_empty_selection_and_a_foreign_label(self):
        image = make_image(self.project)
        response = self.assign(assign=self.ants.pk)
        self.assertContains(response, "Select at least one image first.", 1, 422)

        other_label = Label.objects.create(
            project=Project.objects.create(owner=self.bob, name="Bob's"), name="x"
        )
        response = self.assign(image=[image.pk], assign=other_label.pk)
        self.assertContains(response, "does not exist in this project", 1, 422)
        image.refresh_from_db()
        self.assertIsNone(image.label)

    def test_it_keeps_the_last_assignment_when_two_people_label_at_once(self):
        images = make_images(self.project, 15)
        ids = [i.pk for i in images]
        first, second = Client(), Client()
        first.force_login(self.alice)
        second.force_login(self.alice)

        self.assign(first, image=ids[:10], assign=self.ants.pk)
        self.assign(second, image=ids[5:], assign=self.bees.pk)

        labels = dict(Image.objects.values_list("pk", "label__name"))
        self.assertEqual([labels[i] for i in ids[:5]], ["ants"] * 5)
        self.assertEqual([labels[i] for i in ids[5:]], ["bees"] * 10)
        self.assertEqual(self.project.label_counts(), {"ants": 5, "bees": 10})

    def test_it_filters_by_status_label_and_file_name(self):
        make_image(self.project, name="ant_01.jpg", label=self.ants)
        make_image(self.project, name="bee_01.jpg", label=self.bees)
        make_image(self.project, name="bee_02.jpg")
        make_image(self.project, name="bee_03.jpg", trashed_at="2024-01-01T00:00Z")

        def names(**params):
            response = self.client.get(self.url("label"), params)
            return sorted(i.original_name for i in response.context["images"])

        self.assertEqual(names(), ["ant_01.jpg", "bee_01.jpg", "bee_02.jpg"])
        self.assertEqual(names(status="unlabeled"), ["bee_02.jpg"])
        self.assertEqual(names(status="labeled"), ["ant_01.jpg", "bee_01.jpg"])
        self.assertEqual(names(label=self.bees.pk), ["bee_01.jpg"])
        self.assertEqual(names(q="BEE"), ["bee_01.jpg", "bee_02.jpg"])
        # A label of another project is ignored rather than failing the page.
        self.assertEqual(len(names(label=999999)), 3)

    def test_it_answers_page_changes_with_the_grid_only(self):
        make_images(self.project, GRID_PAGE_SIZE + 2)
        response = self.client.get(
            self.url("label"), {"page": 2}, HTTP_HX_TARGET="grid-area", **HTMX
        )
        self.assertTemplateUsed(response, "labeling/_grid.html")
        self.assertTemplateNotUsed(response, "labeling/label_images.html")
        self.assertContains(response, 'name="image"', count=2)
        self.assertContains(response, "Page 2 of 2")

    def test_it_pages_with_a_constant_number_of_queries(self):
        make_images(self.project, 3, label=self.ants)
        self.client.get(self.url("label"))  # the first request checks for users
        with CaptureQueriesContext(connection) as small:
            self.client.get(self.url("label"))

        for n in range(8):
            Label.objects.create(project=self.project, name=f"extra{n}")
        make_images(self.project, GRID_PAGE_SIZE * 2, label=self.bees)
        make_images(self.project, 10)
        with CaptureQueriesContext(connection) as large:
            self.client.get(self.url("label"), {"page": 2})

        self.assertEqual(len(small), len(large))

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        image = make_image(self.project)
        for name in ["label", "focus", "trash"]:
            self.assertEqual(self.client.get(self.url(name)).status_code, 404, name)
        for name in ["assign", "focus_assign", "focus_undo"]:
            response = self.client.post(
                self.url(name), {"image": image.pk, "assign": self.ants.pk}, **HTMX
            )
            self.assertEqual(response.status_code, 404, name)
        image.refresh_from_db()
        self.assertIsNone(image.label)


class FocusedViewTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(project=self.project, name="bees")
        # Newest first: the focused view walks c, b, a.
        self.a = make_image(self.project, name="a.jpg")
        self.b = make_image(self.project, name="b.jpg", label=self.ants)
        self.c = make_image(self.project, name="c.jpg")

    def url(self, name):
        return reverse(f"labeling:{name}", args=[self.project.pk])

    def shown(self, response):
        return response.context["image"]

    def test_it_starts_on_the_first_unlabeled_image_with_number_keys(self):
        response = self.client.get(self.url("focus"))
        self.assertEqual(self.shown(response), self.c)
        self.assertContains(response, 'data-key="1"')
        self.assertContains(response, 'data-key="2"')
        self.assertContains(response, 'data-key="ArrowRight"')
        self.assertContains(response, 'data-key="s"')
        self.assertContains(response, "js/labeling.js")

    def test_it_opens_a_given_image(self):
        response = self.client.get(self.url("focus"), {"image": self.b.pk})
        self.assertEqual(self.shown(response), self.b)
        self.assertEqual(response.context["prev_id"], self.c.pk)
        self.assertEqual(response.context["next_id"], self.a.pk)
        self.assertEqual(response.context["skip_id"], self.a.pk)

    def test_it_answers_404_for_an_image_it_cannot_show(self):
        other = make_image(Project.objects.create(owner=self.bob, name="Bob's"))
        trashed = make_image(self.project, trashed_at="2024-01-01T00:00Z")
        for image_id in [other.pk, trashed.pk, "abc"]:
            response = self.client.get(self.url("focus"), {"image": image_id})
            self.assertEqual(response.status_code, 404, image_id)

    def test_it_assigns_and_brings_up_the_next_unlabeled_image(self):
        response = self.client.post(
            self.url("focus_assign"),
            {"image": self.c.pk, "assign": self.bees.pk},
            **HTMX,
        )
        self.assertEqual(response.status_code, 200)
        self.c.refresh_from_db()
        self.assertEqual(self.c.label, self.bees)
        self.assertEqual(self.c.labeled_by, self.alice)
        # b is labeled already, so a comes up.
        self.assertEqual(self.shown(response), self.a)
        self.assertContains(response, f'data-image="{self.a.pk}"')
        self.assertContains(response, "c.jpg labeled “bees”.")
        self.assertContains(response, 'id="readiness" aria-live="polite" hx-swap-oob')
        self.assertIn(f"image={self.a.pk}", response["HX-Replace-Url"])

    def test_it_stays_on_the_image_when_nothing_is_left_unlabeled(self):
        self.client.post(
            self.url("focus_assign"), {"image": self.a.pk, "assign": self.ants.pk}
        )
        response = self.client.post(
            self.url("focus_assign"),
            {"image": self.c.pk, "assign": self.bees.pk},
            **HTMX,
        )
        # Nothing unlabeled is left: the view stays on the image just labeled,
        # so a further key press cannot relabel another photo unseen.
        self.assertEqual(self.shown(response), self.c)
        self.assertEqual(response.context["unlabeled_count"], 0)
        self.assertContains(response, "Every image in this view is labeled now.")

    def test_it_undoes_the_last_assignment(self):
        self.client.post(
            self.url("focus_assign"), {"image": self.b.pk, "assign": self.bees.pk}
        )
        self.client.post(
            self.url("focus_assign"), {"image": self.c.pk, "assign": self.bees.pk}
        )

        response = self.client.post(
            self.url("focus_undo"), {"image": self.a.pk}, **HTMX
        )
        self.c.refresh_from_db()
        self.assertIsNone(self.c.label)
        self.assertEqual(self.shown(response), self.c)
        self.assertContains(response, "Undone: c.jpg is unlabeled again.")

        self.client.post(self.url("focus_undo"), {"image": self.c.pk}, **HTMX)
        self.b.refresh_from_db()
        self.assertEqual(self.b.label, self.ants)

        response = self.client.post(
            self.url("focus_undo"), {"image": self.b.pk}, **HTMX
        )
        self.assertContains(response, "Nothing to undo.")
        self.assertEqual(self.project.label_counts(), {"ants": 1, "bees": 0})

    def test_it_does_not_undo_over_someone_elses_change(self):
        self.client.post(
            self.url("focus_assign"), {"image": self.c.pk, "assign": self.bees.pk}
        )
        other = Client()
        other.force_login(self.alice)
        other.post(
            reverse("labeling:assign", args=[self.project.pk]),
            {"image": [self.c.pk], "assign": self.ants.pk},
        )

        response = self.client.post(
            self.url("focus_undo"), {"image": self.a.pk}, **HTMX
        )
        self.assertContains(response, "relabeled by someone else")
        self.c.refresh_from_db()
        self.assertEqual(self.c.label, self.ants)

    def test_it_refuses_an_image_of_another_project(self):
        other = make_image(Project.objects.create(owner=self.bob, name="Bob's"))
        response = self.client.post(
            self.url("focus_assign"),
            {"image": other.pk, "assign": self.ants.pk},
            **HTMX,
        )
        self.assertContains(response, "not in this project", status_code=422)
        other.refresh_from_db()
        self.assertIsNone(other.label)

    def test_it_steps_through_images_with_htmx(self):
        response = self.client.get(
            self.url("focus"),
            {"image": self.a.pk},
            HTTP_HX_TARGET="focus-panel",
            **HTMX,
        )
        self.assertTemplateUsed(response, "labeling/_focus_panel.html")
        self.assertTemplateNotUsed(response, "labeling/focus.html")
        self.assertEqual(response.context["prev_id"], self.b.pk)
        self.assertIsNone(response.context["next_id"])
