-- One row per research conversation, keyed by the Slack thread it lives in.
CREATE TABLE IF NOT EXISTS conversations (
    team_id      TEXT NOT NULL,
    channel_id   TEXT NOT NULL,
    thread_ts    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    state        TEXT NOT NULL,
    model        TEXT NOT NULL,
    history      TEXT NOT NULL DEFAULT '[]',  -- JSON list of {"role", "content"} sent to the model
    report       TEXT,                        -- the last report, as the model wrote it
    refs         TEXT NOT NULL DEFAULT '[]',  -- JSON list of {"index", "title", "url"}
    progress_ts  TEXT,                        -- the live progress message, while one exists
    options      TEXT NOT NULL DEFAULT '{}',  -- JSON of the request's research options
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts)
);
CREATE INDEX IF NOT EXISTS conversations_state ON conversations (state);

-- The usage ledger: one row per model call.
CREATE TABLE IF NOT EXISTS usage (
    id               INTEGER PRIMARY KEY,
    team_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    channel_id       TEXT NOT NULL,
    thread_ts        TEXT NOT NULL,
    model            TEXT NOT NULL,
    kind             TEXT NOT NULL,            -- clarify | research | answer
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    request_id       TEXT NOT NULL DEFAULT '',
    cost_usd         REAL,                     -- NULL when the model has no known price
    created_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_team_time ON usage (team_id, created_at);

-- Keys of Slack deliveries already handled (event ids, message timestamps).
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,
    claimed_at REAL NOT NULL
);
