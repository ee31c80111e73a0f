from django.urls import include, path

from training import urls_datasets, urls_evaluation, urls_runs, urls_services

app_name = "training"

urlpatterns = [
    path("", include(urls_datasets)),
    path("", include(urls_runs)),
    path("", include(urls_evaluation)),
    path("", include(urls_services)),
]
