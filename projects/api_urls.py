from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import SimpleRouter

from projects.api import ImageViewSet, ProjectViewSet

router = SimpleRouter()
router.register("projects", ProjectViewSet, basename="api-project")

images = "projects/<int:project_id>/images/"
image = "projects/<int:project_id>/images/<int:pk>/"

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    *router.urls,
    path(
        images,
        ImageViewSet.as_view({"get": "list"}),
        name="api-image-list",
    ),
    path(
        f"{images}upload/",
        ImageViewSet.as_view({"post": "upload"}),
        name="api-image-upload",
    ),
    path(
        f"{images}upload-zip/",
        ImageViewSet.as_view({"post": "upload_zip"}),
        name="api-image-upload-zip",
    ),
    path(
        image,
        ImageViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="api-image-detail",
    ),
    path(
        f"{image}file/",
        ImageViewSet.as_view({"get": "file"}),
        name="api-image-file",
    ),
    path(
        f"{image}thumbnail/",
        ImageViewSet.as_view({"get": "thumbnail"}),
        name="api-image-thumbnail",
    ),
]
