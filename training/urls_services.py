from django.urls import path

from training.views import services as views

urlpatterns = [
    path("services/", views.service_list, name="services"),
    path("training-versions/<int:run_id>/deploy/", views.deploy, name="deploy"),
    path(
        "training-versions/<int:run_id>/export/",
        views.model_export,
        name="model_export",
    ),
    path("services/<int:service_id>/", views.service_detail, name="service_detail"),
    path(
        "services/<int:service_id>/status/",
        views.service_status,
        name="service_status",
    ),
    path("services/<int:service_id>/stop/", views.service_stop, name="service_stop"),
    path("services/<int:service_id>/start/", views.service_start, name="service_start"),
    path(
        "services/<int:service_id>/auto-stop/",
        views.service_auto_stop,
        name="service_auto_stop",
    ),
    path(
        "services/<int:service_id>/delete/",
        views.service_delete,
        name="service_delete",
    ),
    path("services/<int:service_id>/try/", views.service_try, name="service_try"),
    path(
        "services/<int:service_id>/batch-test/",
        views.service_batch_test,
        name="service_batch_test",
    ),
]
