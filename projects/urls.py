from django.urls import path

from projects import image_views, views

app_name = "projects"

urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_create, name="create"),
    path("<int:project_id>/", views.project_detail, name="detail"),
    path("<int:project_id>/rename/", views.project_rename, name="rename"),
    path("<int:project_id>/delete/", views.project_delete, name="delete"),
    path("<int:project_id>/images/", image_views.image_list, name="images"),
    path("<int:project_id>/images/upload/", image_views.image_upload, name="upload"),
    path(
        "<int:project_id>/images/delete/",
        image_views.images_delete,
        name="images_delete",
    ),
    path(
        "<int:project_id>/images/<int:image_id>/file",
        image_views.image_file,
        name="image_file",
    ),
    path(
        "<int:project_id>/images/<int:image_id>/thumb",
        image_views.image_thumb,
        name="image_thumb",
    ),
    path(
        "<int:project_id>/images/<int:image_id>/delete/",
        image_views.image_delete,
        name="image_delete",
    ),
]
