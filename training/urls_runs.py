from django.urls import path

from training.views import runs as views

urlpatterns = [
    path("train/", views.train, name="train"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/status/", views.run_status, name="run_status"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/delete/", views.run_delete, name="run_delete"),
]
