-- One row that every Append updates first thing in its transaction. Two
-- writers on one database (two Stores over one file in a process share
-- DuckDB's instance) then conflict, and the one that retries sees the
-- other's events before deciding which of its own are new.
CREATE TABLE append_lock (appends UBIGINT NOT NULL);
INSERT INTO append_lock VALUES (0);
