"""The value model every layer uses (config, connectors, state, pipeline): the type
families, a table's description, `coerce` (a canonical value as a column stores it), the
JSON codec and key text (`codec`) and the one family -> Arrow type map (`arrow`).

It imports nothing else of the project but `errors` and `envelope`, so anything may
import it."""

from syncswim_lib.values.columns import ColumnInfo, TableInfo, TypeFamily

__all__ = ["ColumnInfo", "TableInfo", "TypeFamily"]
