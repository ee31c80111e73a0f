from django.urls import path

from projects import views

app_name = "projects"

urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_create, name="create"),
    path("<int:project_id>/", views.project_detail, name="detail"),
    path("<int:project_id>/rename/", views.project_rename, name="rename"),
    path("<int:project_id>/delete/", views.project_delete, name="delete"),
]
