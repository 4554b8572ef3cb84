"""PostgreSQL migrations, applied in file-name order by PostgresEventStore.open()."""
