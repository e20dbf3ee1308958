"""Bulk contact import: a background job that stages a file, then applies it.

The flow (each step a service in :mod:`contacts.importing.services`):

1. ``import_create`` keeps the uploaded file (in the database, in chunks, so
   any worker on any machine can read it) and queues ``import_stage``.
2. ``import_stage`` streams the file (:mod:`contacts.importing.reader`: CSV
   in any common encoding, or XLSX read-only), normalises each phone once,
   checks every cell and writes the rows to a staging table, a chunk per
   short transaction. Problems are written as issues with the file's line
   number, the column, the value and the reason; duplicates within the
   file are found by the database afterwards. A file with any issue stops
   here: nothing was imported, the report says what to fix.
3. The user confirms (``import_confirm``); ``import_apply`` upserts the
   contacts and adds the list memberships a chunk at a time, looking
   existing contacts up once per chunk, each chunk in one short transaction
   together with what undoing it needs.
4. ``import_cancel`` at any point before the end, or an error while
   applying, undoes what was applied: for the user it is all or nothing.

django-import-export is kept for exports (and the opt-out import, which is
small and goes through ``optout_add``); it compares and saves row by row,
which is what made large contact imports slow and lock the database.
"""
