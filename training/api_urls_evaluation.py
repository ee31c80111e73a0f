from django.urls import path

from training.views import evaluation_api

urlpatterns = [
    path(
        "projects/<int:project_id>/training-versions",
        evaluation_api.TrainingVersionList.as_view(),
        name="training-version-list",
    ),
    path(
        "projects/<int:project_id>/training-versions/<str:version>/metrics",
        evaluation_api.TrainingVersionMetrics.as_view(),
        name="training-version-metrics",
    ),
]
