import io

from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from projects import storage
from projects.importing import import_file
from projects.models import Image, Label
from tests.base import BaseTestCase


def make_images(project, count, *, label=None, prefix="img", start=0):
    """Rows only: the gallery reads no files, the thumbnails come later."""
    images = [
        Image(
            project=project,
            label=label,
            file=f"projects/{project.pk}/images/{prefix}{n}.jpg",
            thumbnail=f"projects/{project.pk}/thumbs/{prefix}{n}.jpg",
            original_name=f"{prefix}_{n:05d}.jpg",
            sha256=f"{prefix}{n:060d}"[:64],
            width=640,
            height=480,
            format="JPEG",
            size_bytes=1000,
        )
        for n in range(start, start + count)
    ]
    return Image.objects.bulk_create(images)


def png(color) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


class GalleryTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.url = reverse("projects:images", args=[self.project.pk])
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(project=self.project, name="bees")

    def names(self, response) -> list[str]:
        return [image.original_name for image in response.context["page"].object_list]

    def test_it_shows_tiles_with_names_and_label_chips(self):
        make_images(self.project, 1, label=self.ants, prefix="ant")
        response = self.client.get(self.url)
        self.assertContains(response, "ant_00000.jpg")
        self.assertContains(response, 'class="label-chip"')
        self.assertContains(response, ">ants</span>")
        image = Image.objects.get()
        thumb = reverse("projects:image_thumb", args=[self.project.pk, image.pk])
        self.assertContains(response, f'src="{thumb}"')

    def test_it_filters_by_tab(self):
        make_images(self.project, 2, label=self.ants, prefix="ant")
        make_images(self.project, 3, prefix="new")

        labeled = self.client.get(self.url, {"status": "labeled"})
        unlabeled = self.client.get(self.url, {"status": "unlabeled"})
        every = self.client.get(self.url)

        self.assertEqual(len(self.names(labeled)), 2)
        self.assertTrue(all(n.startswith("new") for n in self.names(unlabeled)))
        self.assertEqual(len(self.names(unlabeled)), 3)
        self.assertEqual(len(self.names(every)), 5)
        self.assertEqual(
            every.context["counts"], {"all": 5, "labeled": 2, "unlabeled": 3}
        )

    def test_it_leaves_trashed_images_out(self):
        make_images(self.project, 2)
        Image.objects.filter(pk=Image.objects.first().pk).update(
            trashed_at=timezone.now()
        )
        response = self.client.get(self.url)
        self.assertEqual(len(self.names(response)), 1)
        self.assertEqual(response.context["counts"]["all"], 1)

    def test_it_filters_by_label(self):
        make_images(self.project, 2, label=self.ants, prefix="ant")
        make_images(self.project, 1, label=self.bees, prefix="bee")
        response = self.client.get(self.url, {"label": self.bees.pk})
        self.assertEqual(self.names(response), ["bee_00000.jpg"])

    def test_it_ignores_a_label_of_another_project(self):
        other = self.project.__class__.objects.create(owner=self.bob, name="B")
        theirs = Label.objects.create(project=other, name="wasps")
        make_images(self.project, 2)
        response = self.client.get(self.url, {"label": theirs.pk})
        self.assertEqual(len(self.names(response)), 2)

    def test_it_searches_file_names(self):
        make_images(self.project, 3, prefix="ant")
        make_images(self.project, 2, prefix="bee")
        response = self.client.get(self.url, {"q": "BEE_"})
        self.assertEqual(self.names(response), ["bee_00001.jpg", "bee_00000.jpg"])

    def test_it_paginates_and_keeps_the_filters_in_page_links(self):
        make_images(self.project, 130, prefix="ant", label=self.ants)
        response = self.client.get(
            self.url, {"status": "labeled", "q": "ant", "page": 2}
        )

        page = response.context["page"]
        self.assertEqual((page.number, page.paginator.num_pages), (2, 3))
        self.assertEqual(len(page.object_list), 60)
        self.assertContains(response, "?status=labeled&amp;q=ant&amp;page=3")
        self.assertContains(response, "Page 2 of 3")

    def test_it_answers_a_bad_page_number_with_the_last_page(self):
        make_images(self.project, 70)
        response = self.client.get(self.url, {"page": 99})
        self.assertEqual(response.context["page"].number, 2)
        self.assertEqual(self.client.get(self.url, {"page": "x"}).status_code, 200)

    def test_it_runs_the_same_number_of_queries_for_any_page_size(self):
        make_images(self.project, 3, label=self.ants, prefix="a")
        self.client.get(self.url)  # warm up the session
        with self.assertNumQueries(7):
            self.client.get(self.url)

        make_images(self.project, 200, label=self.bees, prefix="b")
        make_images(self.project, 50, prefix="c")
        with self.assertNumQueries(7):
            response = self.client.get(self.url, {"page": 2})
        self.assertEqual(len(self.names(response)), 60)

    def test_it_says_so_when_there_are_no_images(self):
        response = self.client.get(self.url)
        self.assertContains(response, "No images yet")
        self.assertContains(
            response, reverse("projects:upload", args=[self.project.pk])
        )

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)


class DeleteImagesTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.images = [
            Image.objects.get(
                pk=import_file(self.project, f"{n}.png", png((n, 0, 0))).image_id
            )
            for n in range(3)
        ]

    def test_it_asks_before_deleting_one_image(self):
        image = self.images[0]
        url = reverse("projects:image_delete", args=[self.project.pk, image.pk])
        self.assertContains(self.client.get(url), "Delete 1 image?")
        self.assertTrue(Image.objects.filter(pk=image.pk).exists())

    def test_it_deletes_one_image_with_its_files(self):
        image = self.images[0]
        url = reverse("projects:image_delete", args=[self.project.pk, image.pk])
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(url)

        self.assertRedirects(
            response, reverse("projects:images", args=[self.project.pk])
        )
        self.assertFalse(Image.objects.filter(pk=image.pk).exists())
        self.assertFalse(storage.media_path(image.file).exists())
        self.assertFalse(storage.media_path(image.thumbnail).exists())
        self.assertEqual(Image.objects.count(), 2)

    def test_it_confirms_then_deletes_selected_images(self):
        url = reverse("projects:images_delete", args=[self.project.pk])
        chosen = [self.images[0].pk, self.images[2].pk]
        gallery = reverse("projects:images", args=[self.project.pk]) + "?page=1"

        confirm = self.client.post(url, {"image_ids": chosen, "next": gallery})
        self.assertContains(confirm, "Delete 2 images?")
        self.assertEqual(Image.objects.count(), 3)

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                url, {"image_ids": chosen, "next": gallery, "confirm": "yes"}
            )
        self.assertRedirects(response, gallery)
        self.assertEqual(
            list(Image.objects.values_list("pk", flat=True)), [self.images[1].pk]
        )
        self.assertFalse(storage.media_path(self.images[0].file).exists())
        self.assertTrue(storage.media_path(self.images[1].file).exists())

    def test_it_keeps_files_a_dataset_version_still_uses(self):
        from training.models import DatasetVersion, DatasetVersionItem

        image = self.images[0]
        version = DatasetVersion.objects.create(
            project=self.project, name="V001", train_ratio=0.8, seed=1
        )
        DatasetVersionItem.objects.create(
            dataset_version=version,
            image=image,
            file=image.file,
            thumbnail=image.thumbnail,
            original_name=image.original_name,
            sha256=image.sha256,
            label_name="ants",
            usage="TRAIN",
        )
        url = reverse("projects:image_delete", args=[self.project.pk, image.pk])
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(url)

        self.assertFalse(Image.objects.filter(pk=image.pk).exists())
        self.assertTrue(storage.media_path(image.file).exists())

    def test_it_never_deletes_another_users_images(self):
        self.client.force_login(self.bob)
        image = self.images[0]
        one = reverse("projects:image_delete", args=[self.project.pk, image.pk])
        many = reverse("projects:images_delete", args=[self.project.pk])
        self.assertEqual(self.client.post(one).status_code, 404)
        response = self.client.post(many, {"image_ids": [image.pk], "confirm": "yes"})
        self.assertEqual(response.status_code, 404)
        self.assertEqual(Image.objects.count(), 3)

    def test_it_ignores_an_outside_next_address(self):
        image = self.images[0]
        url = reverse("projects:image_delete", args=[self.project.pk, image.pk])
        response = self.client.post(url, {"next": "https://evil.example/"})
        self.assertRedirects(
            response, reverse("projects:images", args=[self.project.pk])
        )

    def test_it_goes_back_to_the_gallery_for_a_next_that_is_not_a_path(self):
        gallery = reverse("projects:images", args=[self.project.pk])
        one = reverse(
            "projects:image_delete", args=[self.project.pk, self.images[0].pk]
        )
        many = reverse("projects:images_delete", args=[self.project.pk])

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(one, {"next": "images"})
        self.assertRedirects(response, gallery)
        self.assertFalse(Image.objects.filter(pk=self.images[0].pk).exists())

        for back in [
            "gallery",
            "abc",
            "-1",
            "NaN",
            "²",
            "images?page=2",
            "//x.example",
        ]:
            with self.subTest(back=back):
                response = self.client.post(many, {"image_ids": [], "next": back})
                self.assertRedirects(response, gallery, fetch_redirect_response=False)

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                many,
                {"image_ids": [self.images[1].pk], "confirm": "yes", "next": "gallery"},
            )
        self.assertRedirects(response, gallery)
        self.assertEqual(Image.objects.count(), 1)

    def test_it_shows_the_delete_page_with_a_safe_next(self):
        image = self.images[0]
        url = reverse("projects:image_delete", args=[self.project.pk, image.pk])
        response = self.client.get(url, {"next": "images"})
        gallery = reverse("projects:images", args=[self.project.pk])
        self.assertContains(response, f'name="next" value="{gallery}"')

    def test_it_refuses_a_bad_image_id_and_deletes_nothing(self):
        url = reverse("projects:images_delete", args=[self.project.pk])
        good = self.images[0].pk
        for bad in ["²", "9223372036854775808", "99999999999999999999", "0", "-1", "x"]:
            with self.subTest(bad=bad):
                response = self.client.post(
                    url, {"image_ids": [good, bad], "confirm": "yes"}, follow=True
                )
                self.assertContains(
                    response, f"Not a valid image id: “{bad}”. An id is a whole number"
                )
                self.assertContains(response, "Nothing was deleted.")
                self.assertEqual(Image.objects.count(), 3)

    def test_it_says_which_selected_images_were_already_gone(self):
        url = reverse("projects:images_delete", args=[self.project.pk])
        chosen = [self.images[0].pk, self.images[2].pk + 1000]

        response = self.client.post(url, {"image_ids": chosen})
        self.assertContains(response, "Delete 1 image?")
        self.assertContains(
            response, "1 selected image is not in this project any more."
        )

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                url, {"image_ids": chosen, "confirm": "yes"}, follow=True
            )
        self.assertContains(
            response,
            "Deleted 1 image. 1 selected image is not in this project any more.",
        )
        self.assertEqual(Image.objects.count(), 2)

    @override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=5)
    def test_it_explains_a_form_with_too_many_fields(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        client.get(reverse("projects:images", args=[self.project.pk]))
        token = client.cookies["csrftoken"].value
        ids = [image.pk for image in self.images] * 2

        response = client.post(
            reverse("projects:images_delete", args=[self.project.pk]),
            {"image_ids": ids, "confirm": "yes", "csrfmiddlewaretoken": token},
        )

        self.assertContains(
            response,
            "Send at most 5 form fields or query parameters in one request",
            status_code=400,
        )
        self.assertEqual(Image.objects.count(), 3)
