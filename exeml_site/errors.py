"""The answer to a request Django refuses before any view sees it.

Django checks the size of a request while reading it (too many files, too many
fields, too large a body) and answers 400 through `handler400`. The API and the
upload page's script read a JSON message; browsers get a page saying which
limit was hit.
"""

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpResponseBadRequest, JsonResponse
from django.template.loader import render_to_string

GENERIC_MESSAGE = "The server could not understand this request."


def limit_message(exception) -> str:
    """What a person should do about the request limit `exception` names."""
    if isinstance(exception, TooManyFilesSent):
        return (
            f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files in one "
            "request (UPLOAD_MAX_FILES); split the upload into smaller batches."
        )
    if isinstance(exception, TooManyFieldsSent):
        return (
            f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields or "
            "query parameters in one request (DATA_UPLOAD_MAX_NUMBER_FIELDS); "
            "select fewer images at a time."
        )
    if isinstance(exception, RequestDataTooBig):
        size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
        return (
            f"The request body is over {size:.1f} MB, the most taken apart from "
            "uploaded files (DATA_UPLOAD_MAX_MEMORY_SIZE); send less at once, and "
            "send images as file uploads."
        )
    return GENERIC_MESSAGE


def bad_request(request, exception=None):
    message = limit_message(exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    if "application/json" in request.headers.get("Accept", ""):
        # The key the pages' own JSON errors use (the upload page's script).
        return JsonResponse({"error": message}, status=400)

    # No request context: the request may be the problem (an unknown host).
    html = render_to_string("400.html", {"message": message})
    return HttpResponseBadRequest(html)
