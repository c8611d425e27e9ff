"""A tiny app whose migrations the release tests roll back and release again.

Installed only in test sessions (OPSQUEUE_EXTRA_APPS, set by tests/environment.py, which the
worker processes inherit), so the project's own apps are never unapplied under a test.

Its migrations, in order, each there for one test:
  0002 removes a column (backward-incompatible: the linter gate refuses it);
  0003 adds a column with ALTER TABLE (the lock-timeout test holds that table);
  0004 waits while the switch "hold" is on (the concurrent-release test holds it there);
  0005 raises while the switch "fail" is on (the failed-release test).
Switches are rows the test writes; with none (as when the test database is created) every
migration passes straight through.
"""
