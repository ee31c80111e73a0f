from django.urls import include, path

from training import (
    api_urls_datasets,
    api_urls_evaluation,
    api_urls_runs,
    api_urls_services,
)

urlpatterns = [
    path("", include(api_urls_datasets)),
    path("", include(api_urls_runs)),
    path("", include(api_urls_evaluation)),
    path("", include(api_urls_services)),
]
