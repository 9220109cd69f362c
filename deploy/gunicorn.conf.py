# gunicorn -c deploy/gunicorn.conf.py "service.app:create_app()"
# The settings live in the package so `genvault serve` and this file agree.
from service.gunicorn_conf import *  # noqa: F403
