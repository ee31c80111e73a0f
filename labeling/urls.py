# Mounted under /projects/<project_id>/. Labels and images live in
# projects.models; labeling holds the screens and the rules for changing them.
from django.urls import path

from labeling import views

app_name = "labeling"

urlpatterns = [
    path("label/", views.label_images, name="label"),
    path("label/assign/", views.assign_labels, name="assign"),
    path("label/focus/", views.focus_image, name="focus"),
    path("label/focus/assign/", views.assign_focused, name="focus_assign"),
    path("label/focus/undo/", views.undo_focused, name="focus_undo"),
    path("labels/new/", views.label_create, name="label_create"),
    path("labels/<int:label_id>/", views.label_edit, name="label_edit"),
    path("labels/<int:label_id>/merge/", views.label_merge, name="label_merge"),
    path("labels/<int:label_id>/delete/", views.label_delete, name="label_delete"),
    path("trash/", views.trash_list, name="trash"),
    path("trash/restore/", views.trash_restore, name="trash_restore"),
    path("trash/empty/", views.trash_empty, name="trash_empty"),
]
