"""A one-file Django project, served by gunicorn. Run from this directory:

    gunicorn -w 2 -b 127.0.0.1:8000 app:application

    GET /health   a light view
    GET /light    a light view: a small JSON document
    GET /heavy    a CPU-heavy view: pure-Python work (a word-frequency
                  report over generated text), ?n= sets its size
"""

import os
import sys

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="pyrometer-example-not-secret",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponseBadRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

WORDS = (
    "profile sample stack frame thread worker request response gunicorn django "
    "python process latency throughput cache query template render view"
).split()


def generate_text(n, seed):
    """n pseudo-random words (a linear congruential generator, no imports)."""
    x = seed
    out = []
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(WORDS[x % len(WORDS)])
    return " ".join(out)


def word_report(text):
    counts = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    bigrams = {}
    words = text.split()
    for a, b in zip(words, words[1:]):
        key = a + " " + b
        bigrams[key] = bigrams.get(key, 0) + 1
    top = sorted(bigrams.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {"words": len(words), "distinct": len(counts), "top_bigrams": top}


def heavy_view(request):
    try:
        n = int(request.GET.get("n", "150000"))
    except ValueError:
        return HttpResponseBadRequest("n must be an integer")
    if not 1 <= n <= 2_000_000:
        return HttpResponseBadRequest("n must be in 1..2000000")
    text = generate_text(n, seed=n)
    return JsonResponse(word_report(text))


def light_view(request):
    return JsonResponse({"status": "ok", "pid": os.getpid(), "python": sys.version.split()[0]})


urlpatterns = [
    path("health", light_view),
    path("light", light_view),
    path("heavy", heavy_view),
]

application = get_wsgi_application()
