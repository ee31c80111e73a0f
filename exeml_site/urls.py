from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from projects import views as project_views


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


# Requests over Django's size limits get a message naming the limit.
handler400 = "exeml_site.errors.bad_request"

urlpatterns = [
    path("", project_views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("accounts/signup/", project_views.signup, name="signup"),
    path("accounts/token/", project_views.api_token, name="api_token"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("projects/", include("projects.urls")),
    path("projects/<int:project_id>/", include("labeling.urls")),
    path("projects/<int:project_id>/", include("training.urls")),
    path("api/", include("projects.api_urls")),
    path("api/", include("labeling.api_urls")),
    path("api/", include("training.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
]
