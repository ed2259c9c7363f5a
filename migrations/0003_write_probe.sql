-- A scratch table for one check. While writes fail for want of disk space, the
-- server writes a row here and deletes it in the same transaction, once a
-- second, to learn when space is back even if no client writes meanwhile (see
-- Database._probe_writes). It never holds a row.

CREATE TABLE write_probe (filler BLOB NOT NULL);
