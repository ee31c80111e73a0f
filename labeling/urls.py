app_name = "labeling"

urlpatterns: list = []
