from django.urls import path

from training.views import datasets as views

urlpatterns = [
    path("datasets/", views.dataset_list, name="datasets"),
    path("datasets/publish/", views.dataset_publish, name="dataset_publish"),
    path("datasets/import/", views.dataset_import, name="dataset_import"),
    path("datasets/<int:version_id>/", views.dataset_detail, name="dataset_detail"),
    path(
        "datasets/<int:version_id>/delete/",
        views.dataset_delete,
        name="dataset_delete",
    ),
    path(
        "datasets/<int:version_id>/manifest/",
        views.dataset_manifest,
        name="dataset_manifest",
    ),
    path(
        "datasets/<int:version_id>/export/folders/",
        views.dataset_export_folders,
        name="dataset_export_folders",
    ),
    path(
        "datasets/<int:version_id>/export/modelarts/",
        views.dataset_export_modelarts,
        name="dataset_export_modelarts",
    ),
    path(
        "datasets/items/<int:item_id>/thumb/",
        views.dataset_item_thumb,
        name="dataset_item_thumb",
    ),
    path(
        "datasets/items/<int:item_id>/file/",
        views.dataset_item_file,
        name="dataset_item_file",
    ),
]
