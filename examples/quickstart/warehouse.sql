-- The quickstart's sample warehouse. Ebb creates warehouse.db from this
-- script the first time it runs (see `init_sql` in ebb.toml).
CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    plan TEXT NOT NULL,
    -- key/value pairs as text, the way warehouses without a JSON type hold them
    attributes TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO users VALUES
 (1, 'ada@example.com', 'pro', '[["country","UK"],["seats","5"]]', '2026-01-03T10:00:00Z'),
 (2, 'grace@example.com', 'team', '[["country","US"],["seats","12"]]', '2026-01-04T11:00:00Z'),
 (3, 'linus@example.com', 'free', '[["country","FI"],["seats",""]]', '2026-01-05T09:30:00Z'),
 (4, 'margaret@example.com', 'pro', '[["country","US"],["seats","3"]]', '2026-01-06T08:15:00Z'),
 (5, 'barbara@example.com', 'team', '[["country","US"],["seats","40"]]', '2026-01-07T16:45:00Z'),
 (6, 'edsger@example.com', 'free', '[["country","NL"]]', '2026-01-08T12:00:00Z'),
 (7, 'radia@example.com', 'pro', '[["country","US"],["seats","2"]]', '2026-01-09T13:20:00Z'),
 (8, 'tim@example.com', 'team', '[["country","UK"],["seats","7"]]', '2026-01-10T07:05:00Z'),
 (9, 'frances@example.com', 'free', '[["country","US"],["seats",null]]', '2026-01-11T18:30:00Z'),
 (10, 'ken@example.com', 'pro', '[["country","US"],["seats","1"]]', '2026-01-12T10:10:00Z'),
 (11, 'dennis@example.com', 'pro', '[["country","US"],["seats","1"]]', '2026-01-13T10:10:00Z'),
 (12, 'sophie@example.com', 'team', '[["country","UK"],["seats","9"]]', '2026-01-14T14:00:00Z');
