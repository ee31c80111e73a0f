from django.urls import path

from training.views import evaluation

urlpatterns = [
    path("training-versions/", evaluation.dashboard, name="dashboard"),
    path(
        "training-versions/<int:run_id>/metrics/",
        evaluation.run_metrics,
        name="metrics",
    ),
]
