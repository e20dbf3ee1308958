"""One date format on every page (the campaign pages' ``3 Dec 2026, 18:30``),
for the stock admin pages too: Django's own English formats win over
``settings.DATETIME_FORMAT``, so they are overridden here
(``settings.FORMAT_MODULE_PATH``)."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
