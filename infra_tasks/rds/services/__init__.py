"""Writes for managed databases, one module per purpose:

- `schedules`: registration, each database's nightly stop / morning start rows in beat,
  and keeping a database running past its stop;
- `actions`: a person's or a schedule's stop/start/refresh, requested and carried out;
- `enforcement`: the pass that puts back what drifted and tells staff what stays off.

Import from the module that holds a name; nothing is re-exported here.
"""
