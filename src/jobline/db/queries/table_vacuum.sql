-- table_vacuum: vacuum and analyze jobline's table {table} (an identifier, composed by the
-- store from a fixed list). It cannot run in a transaction block: autocommit only.
VACUUM (ANALYZE) jobline.{table}
