from django.urls import path

from training.views import services_api as views

urlpatterns = [
    path("services", views.service_list, name="api-services"),
    path("services/<int:service_id>", views.service_detail, name="api-service"),
    path(
        "services/<int:service_id>/stop",
        views.service_stop,
        name="api-service-stop",
    ),
    path(
        "services/<int:service_id>/start",
        views.service_start,
        name="api-service-start",
    ),
    path(
        "services/<int:service_id>/predict",
        views.service_predict,
        name="api-service-predict",
    ),
]
