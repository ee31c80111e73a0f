from django.urls import path

from training.views import runs_api as views

urlpatterns = [
    path(
        "projects/<int:project_id>/training-runs",
        views.run_list,
        name="api-training-runs",
    ),
    path(
        "projects/<int:project_id>/training-runs/<int:run_id>",
        views.run_detail,
        name="api-training-run",
    ),
    path(
        "projects/<int:project_id>/training-runs/<int:run_id>/cancel",
        views.run_cancel,
        name="api-training-run-cancel",
    ),
]
