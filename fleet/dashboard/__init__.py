"""``fleet dashboard``: a web page and a JSON API over the controller's control requests.

A separate process: it reads and acts only through the requests the CLI sends (``status``,
``jobs``, ``job``, ``cancel``, ``dead_retry``, ``dead_purge``, ``pause``, ``resume``), so it runs
wherever Redis is reachable and several may run at once. docs/dashboard.md has the API.
"""

from .app import DashboardOptions, create_app

__all__ = ["DashboardOptions", "create_app"]
