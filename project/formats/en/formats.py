"""Date formats for the admin (LANGUAGE_CODE en-us): every time shown names its zone.

Django's English formats ("Dec. 3, 2026, 1:21 p.m.") say nothing of the zone, and the
people reading the admin, the schedules (Europe/Warsaw) and the site (UTC) are in different
ones. Templates that show a time in another zone than the site's name that zone too.
"""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
