-- schema_migration_list: the versions of the migrations applied to this database, for
-- GET /readyz (migrate.py owns writing them).
SELECT version FROM jobline.schema_migrations ORDER BY version
