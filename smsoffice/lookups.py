"""``field__anyof=[...]``: membership in a list as ONE array parameter on
PostgreSQL (``field = ANY(CAST(%s AS type[]))``), a plain ``IN`` elsewhere
(for ids and text without Django's per-value preparation).

Why: Django binds parameters on the client with psycopg 3 (its default), so
``IN`` with n values is n literals quoted in Python, then n expressions for
PostgreSQL to parse and plan: about 4.5 µs each, 9 ms for the 2,000 ids of
one engine or report chunk, more than the index lookups themselves. One
array literal is quoted and parsed once. Used on the engine's and the
report's hot paths only; the result is the same set of rows as ``__in``.

Pass a (frozen)set there: ``filter()`` walks a list or tuple value by value
looking for expressions to resolve (about 1 µs each, 7 % of a status apply).

The array goes as its text literal (:func:`array_literal`), built here:
psycopg's list dumper is Python, value by value (1.1 ms for 2,000 ids and
2.6 ms for 2,000 provider ids, against 0.18 and 0.27 ms).
"""

from __future__ import annotations

from django.db.models import Field
from django.db.models.lookups import In

#: Fields whose Python values psycopg passes as they are: no per-value
#: preparation (for 100k report ids, the preparation cost more than the query).
PLAIN = frozenset(
    {"AutoField", "BigAutoField", "IntegerField", "BigIntegerField", "CharField", "TextField"}
)


@Field.register_lookup
class AnyOf(In):
    lookup_name = "anyof"

    def get_prep_lookup(self):
        if self.rhs_is_direct_value() and self.lhs.output_field.get_internal_type() in PLAIN:
            return list(self.rhs)
        return super().get_prep_lookup()

    def as_sql(self, compiler, connection):
        # Elsewhere a plain IN, without Django's per-value preparation for
        # the plain fields (a third of the claim's Python on SQLite).
        values = [v for v in self.rhs if v is not None] if self.rhs_is_direct_value() else []
        if not values or self.lhs.output_field.get_internal_type() not in PLAIN:
            return super().as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [v for v in self.rhs if v is not None]
        if not values:
            # As ``__in=[]``: matches nothing, without a query.
            return super().as_sql(compiler, connection)
        field = self.lhs.output_field
        if field.get_internal_type() in PLAIN:
            prepared = array_literal(values)
        else:
            prepared = [field.get_db_prep_value(v, connection, prepared=False) for v in values]
        # An auto key's own type is "bigserial"-like; its values are bigint.
        db_type = field.rel_db_type(connection) if field.primary_key else field.db_type(connection)
        return f"{lhs} = ANY(CAST(%s AS {db_type}[]))", [*lhs_params, prepared]


def array_literal(values) -> str:
    """PostgreSQL's text form of a one-dimensional array of ``values``
    (integers, or anything else as its ``str``), for ``CAST(%s AS type[])``:
    integers as they are, every other element double-quoted with backslash
    and double quote escaped, so commas, braces, spaces, quotes and the word
    NULL stay text. No NULL elements (callers drop ``None``)."""
    values = list(values)
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return (
        '{"' + '","'.join(str(v).replace("\\", "\\\\").replace('"', '\\"') for v in values) + '"}'
    )
