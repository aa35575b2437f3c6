"""gunicorn settings for the image service; every one can be changed from
the environment:

    GUNICORN_BIND          address to listen on     (default 127.0.0.1:8000)
    GUNICORN_WORKERS       worker processes          (default 4)
    GUNICORN_WORKER_CLASS  sync or gthread           (default sync)
    GUNICORN_THREADS       threads per gthread worker (default 4)
    GUNICORN_ACCESS_LOG    access log file, "-" for stdout (default: none)

The access log ends with %(D)s, the request time in microseconds.
Run from this directory: gunicorn -c gunicorn.conf.py app:app
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
if worker_class not in ("sync", "gthread"):
    raise SystemExit(f"GUNICORN_WORKER_CLASS must be sync or gthread, not {worker_class!r}")
threads = int(os.environ.get("GUNICORN_THREADS", "4")) if worker_class == "gthread" else 1

accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(D)s'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# The slow operation takes well under a second on the images the load
# generator sends; anything near this is a stuck worker.
timeout = 30
graceful_timeout = 5
keepalive = 2
