-- index_drop: drop jobline's invalid leftover index {index} (see index_upkeep_list.sql).
DROP INDEX CONCURRENTLY IF EXISTS jobline.{index}
