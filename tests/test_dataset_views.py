import io
import json
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from projects import storage
from projects.models import Label, Project
from tests.base import BaseTestCase
from tests.image_fixtures import add_image, add_images, jpeg_bytes
from training.datasets import publish_dataset_version
from training.manifest import build_manifest, export_modelarts_zip
from training.models import DatasetVersion, TrainingRun


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/zip")


class DatasetListTests(BaseTestCase):
    def test_it_lists_versions_with_per_label_counts(self):
        add_images(self.project, {"ants": 5, "bees": 4})
        publish_dataset_version(self.project, train_ratio=0.8)
        response = self.client.get(reverse("training:datasets", args=[self.project.pk]))
        self.assertContains(response, "V001")
        self.assertContains(response, "<strong>ants</strong> 4 / 1", html=False)
        self.assertContains(response, "<strong>bees</strong> 3 / 1", html=False)
        self.assertContains(response, '<td class="num">9</td>', html=False)
        self.assertEqual(response.context["section"], "datasets")

    def test_it_invites_to_publish_when_there_is_no_version(self):
        add_images(self.project, {"ants": 3})
        response = self.client.get(reverse("training:datasets", args=[self.project.pk]))
        self.assertContains(response, "No dataset version yet. 3 labeled images")


class PublishViewTests(BaseTestCase):
    def url(self):
        return reverse("training:dataset_publish", args=[self.project.pk])

    def test_it_prefills_the_proposed_name_and_ratio(self):
        add_images(self.project, {"ants": 2})
        publish_dataset_version(self.project)
        response = self.client.get(self.url())
        self.assertContains(response, 'value="V002"')
        self.assertContains(response, 'value="0.8"')

    def test_it_publishes_and_shows_the_version(self):
        add_images(self.project, {"ants": 5, "bees": 5})
        response = self.client.post(
            self.url(), {"name": "first-try", "train_ratio": "0.6"}
        )
        version = DatasetVersion.objects.get(name="first-try")
        self.assertRedirects(
            response,
            reverse("training:dataset_detail", args=[self.project.pk, version.pk]),
        )
        self.assertEqual(version.train_ratio, 0.6)
        self.assertEqual(version.created_by, self.alice)
        self.assertEqual(
            version.label_counts,
            {"ants": {"train": 3, "eval": 2}, "bees": {"train": 3, "eval": 2}},
        )

    def test_it_says_which_labels_it_left_out(self):
        add_images(self.project, {"ants": 5, "bees": 5})
        Label.objects.create(project=self.project, name="wasps")

        page = self.client.get(self.url())
        self.assertContains(
            page, "wasps has no images and will be left out of training."
        )

        response = self.client.post(
            self.url(), {"name": "V001", "train_ratio": "0.8"}, follow=True
        )
        self.assertContains(response, "Dataset version V001 published with 10 images.")
        self.assertContains(response, "wasps has no images and was left out.")

    def test_it_says_nothing_left_out_when_every_label_has_images(self):
        add_images(self.project, {"ants": 5, "bees": 5})
        response = self.client.post(
            self.url(), {"name": "V001", "train_ratio": "0.8"}, follow=True
        )
        self.assertContains(response, "Dataset version V001 published with 10 images.")
        self.assertNotContains(response, "left out")

    def test_it_shows_form_errors_and_publishes_nothing(self):
        add_images(self.project, {"ants": 2})
        publish_dataset_version(self.project, name="V001")
        cases = [
            ({"name": "V001", "train_ratio": "0.8"}, "already has a dataset version"),
            ({"name": "bad name", "train_ratio": "0.8"}, "may contain only letters"),
            ({"name": "x" * 33, "train_ratio": "0.8"}, "at most 32 characters"),
            ({"name": "", "train_ratio": "0.8"}, "This field is required"),
            ({"name": "V002", "train_ratio": "1.5"}, "must be a number from 0 to 1"),
            ({"name": "V002", "train_ratio": "-1"}, "must be a number from 0 to 1"),
            ({"name": "V002", "train_ratio": "abc"}, "must be a number from 0 to 1"),
            ({"name": "V002", "train_ratio": ""}, "must be a number from 0 to 1"),
        ]
        for data, message in cases:
            with self.subTest(data=data):
                response = self.client.post(self.url(), data)
                self.assertEqual(response.status_code, 200)
                self.assertContains(response, message)
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_says_when_there_is_nothing_labeled_to_publish(self):
        add_image(self.project)
        response = self.client.post(self.url(), {"name": "V001", "train_ratio": "0.8"})
        self.assertContains(response, "There are no labeled images to publish")
        self.assertFalse(DatasetVersion.objects.exists())


class DatasetDetailTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.images = add_images(self.project, {"ants": 4, "bees": 4})
        self.version = publish_dataset_version(self.project, train_ratio=0.5)

    def url(self, name, *extra):
        return reverse(f"training:{name}", args=[self.project.pk, *extra])

    def test_it_shows_the_items_with_their_thumbnails(self):
        response = self.client.get(self.url("dataset_detail", self.version.pk))
        self.assertContains(response, "Dataset version V001")
        for item in self.version.items.all():
            thumb = self.url("dataset_item_thumb", item.pk)
            self.assertContains(response, f'src="{thumb}"')
        self.assertContains(response, self.url("dataset_manifest", self.version.pk))
        self.assertContains(
            response, self.url("dataset_export_folders", self.version.pk)
        )

    def test_it_filters_items_by_usage_and_label(self):
        response = self.client.get(
            self.url("dataset_detail", self.version.pk),
            {"usage": "EVAL", "label": "ants"},
        )
        items = list(response.context["page"].object_list)
        self.assertEqual(len(items), 2)
        self.assertEqual({(i.usage, i.label_name) for i in items}, {("EVAL", "ants")})

    def test_it_serves_item_thumbnails_after_the_image_is_deleted(self):
        image = self.images[0]
        storage.delete_files([image.file, image.thumbnail])
        image.delete()
        item = self.version.items.get(sha256=image.sha256)

        response = self.client.get(self.url("dataset_item_thumb", item.pk))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "image/jpeg")
        self.assertEqual(
            b"".join(response.streaming_content),
            storage.media_path(item.thumbnail).read_bytes(),
        )
        response = self.client.get(self.url("dataset_item_file", item.pk))
        self.assertEqual(
            b"".join(response.streaming_content),
            storage.media_path(item.file).read_bytes(),
        )

    def test_it_downloads_the_manifest(self):
        response = self.client.get(self.url("dataset_manifest", self.version.pk))
        self.assertEqual(response["Content-Type"], "application/jsonlines")
        self.assertEqual(
            response["Content-Disposition"],
            'attachment; filename="insects-V001.manifest"',
        )
        self.assertEqual(response.content.decode(), build_manifest(self.version))
        self.assertEqual(len(response.content.decode().splitlines()), 8)
        json.loads(response.content.decode().splitlines()[0])

    def test_it_exports_both_zips(self):
        response = self.client.get(self.url("dataset_export_folders", self.version.pk))
        self.assertEqual(response["Content-Type"], "application/zip")
        with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as z:
            names = z.namelist()
        self.assertEqual(len(names), 8)
        self.assertEqual({n.split("/")[0] for n in names}, {"train", "val"})

        response = self.client.get(
            self.url("dataset_export_modelarts", self.version.pk)
        )
        with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as z:
            names = z.namelist()
        self.assertIn("V001.manifest", names)
        self.assertEqual(len(names), 9)

    def test_it_refuses_a_class_folder_export_that_would_merge_labels(self):
        # A version published before label names had one rule.
        self.version.items.filter(label_name="ants").update(label_name="../../bees")
        response = self.client.get(
            self.url("dataset_export_folders", self.version.pk), follow=True
        )
        self.assertRedirects(response, self.url("dataset_detail", self.version.pk))
        self.assertContains(
            response, "the labels “../../bees” and “bees” would share one folder"
        )

    def test_it_asks_before_deleting_and_then_deletes(self):
        url = self.url("dataset_delete", self.version.pk)
        self.assertContains(self.client.get(url), "Delete dataset version V001?")
        response = self.client.post(url)
        self.assertRedirects(response, self.url("datasets"))
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_refuses_to_delete_a_version_in_use(self):
        TrainingRun.objects.create(
            project=self.project, version="V001", dataset_version=self.version
        )
        url = self.url("dataset_delete", self.version.pk)
        self.assertContains(self.client.get(url), "It cannot be deleted")
        response = self.client.post(url, follow=True)
        self.assertContains(response, "training version V001 was trained on it")
        self.assertTrue(DatasetVersion.objects.filter(pk=self.version.pk).exists())


class ImportViewTests(BaseTestCase):
    def url(self):
        return reverse("training:dataset_import", args=[self.project.pk])

    def test_it_imports_a_modelarts_zip_as_a_version(self):
        source = Project.objects.create(owner=self.alice, name="Source")
        add_images(source, {"ants": 3, "bees": 3})
        version = publish_dataset_version(source, train_ratio=0.5)
        data = export_modelarts_zip(version).read()

        response = self.client.post(self.url(), {"file": upload("v.zip", data)})

        created = DatasetVersion.objects.get(project=self.project)
        self.assertContains(response, "Dataset version V001 created with 6 images")
        self.assertEqual(created.label_counts, version.label_counts)

    def test_it_lists_bad_lines_and_imports_nothing(self):
        manifest = '{"source": "a.jpg", "usage": "TEST", "annotation": []}\n{oops\n'
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("x.manifest", manifest)
            archive.writestr("a.jpg", jpeg_bytes(5))

        response = self.client.post(
            self.url(), {"file": upload("x.zip", buffer.getvalue())}
        )

        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Unknown usage “TEST”: use TRAIN or EVAL.")
        self.assertContains(response, "Not valid JSON")
        self.assertContains(response, "Nothing was imported")
        self.assertFalse(self.project.images.exists())
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_says_when_the_upload_is_not_a_zip(self):
        response = self.client.post(self.url(), {"file": upload("x.zip", b"hello")})
        self.assertContains(response, "This file is not a zip archive.")

    def test_it_refuses_a_taken_name_as_a_form_error(self):
        add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project, name="V001")
        data = export_modelarts_zip(version).read()
        response = self.client.post(
            self.url(), {"file": upload("v.zip", data), "name": "V001"}
        )
        self.assertContains(response, "already has a dataset version named “V001”")
        self.assertEqual(DatasetVersion.objects.count(), 1)


class AccessTests(BaseTestCase):
    def test_it_answers_404_for_another_users_project(self):
        add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project)
        item = version.items.first()
        self.client.force_login(self.bob)
        pid = self.project.pk
        urls = [
            reverse("training:datasets", args=[pid]),
            reverse("training:dataset_publish", args=[pid]),
            reverse("training:dataset_import", args=[pid]),
            reverse("training:dataset_detail", args=[pid, version.pk]),
            reverse("training:dataset_delete", args=[pid, version.pk]),
            reverse("training:dataset_manifest", args=[pid, version.pk]),
            reverse("training:dataset_export_folders", args=[pid, version.pk]),
            reverse("training:dataset_export_modelarts", args=[pid, version.pk]),
            reverse("training:dataset_item_thumb", args=[pid, item.pk]),
            reverse("training:dataset_item_file", args=[pid, item.pk]),
        ]
        for url in urls:
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 404)
                self.assertEqual(self.client.post(url).status_code, 404)
        self.assertTrue(DatasetVersion.objects.filter(pk=version.pk).exists())

    def test_it_answers_404_for_an_item_of_another_project(self):
        mine = Project.objects.create(owner=self.alice, name="Mine")
        add_images(self.project, {"ants": 1})
        item = publish_dataset_version(self.project).items.get()
        url = reverse("training:dataset_item_thumb", args=[mine.pk, item.pk])
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_it_sends_anonymous_visitors_to_log_in(self):
        self.client.logout()
        response = self.client.get(reverse("training:datasets", args=[self.project.pk]))
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])
