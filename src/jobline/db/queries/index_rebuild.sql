-- index_rebuild: rebuild jobline's index {index} without blocking writes (PostgreSQL 12+); if it
-- is interrupted it leaves an invalid *_ccnew index, which the next upkeep drops.
REINDEX INDEX CONCURRENTLY jobline.{index}
