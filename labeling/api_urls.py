# Mounted under /api/.
from django.urls import path

from labeling import api

urlpatterns = [
    path(
        "projects/<int:project_id>/labels",
        api.LabelList.as_view(),
        name="api-labels",
    ),
    path(
        "projects/<int:project_id>/labels/assign",
        api.LabelAssign.as_view(),
        name="api-labels-assign",
    ),
    path(
        "projects/<int:project_id>/labels/<int:label_id>",
        api.LabelDetail.as_view(),
        name="api-label",
    ),
    path(
        "projects/<int:project_id>/labels/<int:label_id>/merge",
        api.LabelMerge.as_view(),
        name="api-label-merge",
    ),
    path(
        "projects/<int:project_id>/readiness",
        api.ProjectReadiness.as_view(),
        name="api-readiness",
    ),
]
