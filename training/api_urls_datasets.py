from django.urls import path

from training.views import datasets_api as views

PREFIX = "projects/<int:project_id>/dataset-versions"

urlpatterns = [
    path(PREFIX, views.dataset_version_list, name="api-dataset-versions"),
    path(
        f"{PREFIX}/import",
        views.dataset_version_import,
        name="api-dataset-version-import",
    ),
    path(
        f"{PREFIX}/<int:version_id>",
        views.dataset_version_detail,
        name="api-dataset-version",
    ),
    path(
        f"{PREFIX}/<int:version_id>/items",
        views.dataset_version_items,
        name="api-dataset-version-items",
    ),
    path(
        f"{PREFIX}/<int:version_id>/manifest",
        views.dataset_version_manifest,
        name="api-dataset-version-manifest",
    ),
    path(
        f"{PREFIX}/<int:version_id>/export/folders",
        views.dataset_version_export_folders,
        name="api-dataset-version-export-folders",
    ),
    path(
        f"{PREFIX}/<int:version_id>/export/modelarts",
        views.dataset_version_export_modelarts,
        name="api-dataset-version-export-modelarts",
    ),
]
