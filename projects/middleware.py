from django.contrib.auth import get_user_model
from django.shortcuts import redirect
from django.urls import reverse

_PASSTHROUGH_PREFIXES = ("/static/", "/api/", "/accounts/signup/", "/healthz")


class FirstRunMiddleware:
    """On a fresh install with no account yet, send visitors to sign up.

    Once one account exists the check is remembered for the life of the process,
    so normal requests pay nothing for it.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.has_users = False

    def __call__(self, request):
        if not self.has_users and not request.path.startswith(_PASSTHROUGH_PREFIXES):
            self.has_users = get_user_model().objects.exists()
            if not self.has_users:
                return redirect(reverse("signup"))
        return self.get_response(request)
