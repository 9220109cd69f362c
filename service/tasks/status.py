"""Where a task is in its life: queued → running → done, or failed (or back to queued).

Defined with the tables (service.db.enums), which store them; re-exported here.
"""

from __future__ import annotations

from service.db.enums import TaskStatus

__all__ = ["TaskStatus"]
