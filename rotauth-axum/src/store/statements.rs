//! The statements of the SQL stores, one text each: the SQLite and PostgreSQL stores on
//! sqlx (`sql`) and the PostgreSQL store on tokio-postgres (`tokio_pg`) run the same ones,
//! so that the tables, the guarded insert and the compare-and-swap are written once. Both
//! databases take `$N` placeholders; what only PostgreSQL runs is in [`pg`].

/// The user and record of a client id.
pub(crate) const LOAD: &str = "SELECT user_id, record FROM rotauth_sessions WHERE client_id = $1";
/// The epoch of a user, if the user has a row.
pub(crate) const SELECT_EPOCH: &str = "SELECT epoch FROM rotauth_user_epochs WHERE user_id = $1";
/// Gives a user a row at epoch 0 unless there is one.
pub(crate) const CREATE_EPOCH: &str = "INSERT INTO rotauth_user_epochs (user_id, epoch) \
     VALUES ($1, 0) ON CONFLICT (user_id) DO NOTHING";
/// Moves a user's epoch on (the row is created at 1 if missing).
pub(crate) const NEXT_EPOCH: &str = "INSERT INTO rotauth_user_epochs (user_id, epoch) \
     VALUES ($1, 1) ON CONFLICT (user_id) DO UPDATE SET epoch = rotauth_user_epochs.epoch + 1";
/// Whether a client id is taken: why a guarded insert wrote nothing.
pub(crate) const TAKEN: &str = "SELECT 1 FROM rotauth_sessions WHERE client_id = $1";
/// The compare-and-swap: under PostgreSQL's row locking a concurrent update of the same row
/// waits for the first to commit, then re-checks `version` against the committed row, so
/// exactly one of them matches; SQLite runs one writing statement at a time.
pub(crate) const SWAP: &str = "UPDATE rotauth_sessions SET record = $1, version = $2, \
     expires_at = $3 WHERE client_id = $4 AND version = $5";
pub(crate) const DELETE: &str = "DELETE FROM rotauth_sessions WHERE client_id = $1";
pub(crate) const LIST: &str =
    "SELECT client_id, expires_at FROM rotauth_sessions WHERE user_id = $1";
/// No session has an empty client id: `$2 = ''` deletes them all.
pub(crate) const DELETE_USER_SESSIONS: &str =
    "DELETE FROM rotauth_sessions WHERE user_id = $1 AND client_id <> $2";
pub(crate) const RENAME_USER: &str = "UPDATE rotauth_sessions SET user_id = $2 WHERE user_id = $1";
/// A page of the census: in client id order, each starting after the last id of the one
/// before, so no cursor is held open and memory is bounded by one page.
pub(crate) const CENSUS: &str = "SELECT client_id, record FROM rotauth_sessions \
     WHERE expires_at > $1 AND client_id > $2 ORDER BY client_id LIMIT $3";
/// Sessions per page when counting them per key.
pub(crate) const CENSUS_PAGE: i64 = 1000;
/// A row at most from each table: fails when either is missing.
pub(crate) const PING: &str = "SELECT (SELECT 1 FROM rotauth_sessions LIMIT 1), \
     (SELECT 1 FROM rotauth_user_epochs LIMIT 1)";

/// PostgreSQL's own: the column types, the migration's lock and the guarded insert.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
pub(crate) mod pg {
    pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS rotauth_sessions (
    client_id BYTEA PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    record BYTEA NOT NULL,
    version BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
)";
    pub(crate) const CREATE_INDEX: &str =
        "CREATE INDEX IF NOT EXISTS rotauth_sessions_user_id ON rotauth_sessions (user_id)";
    pub(crate) const CREATE_EPOCHS: &str = "CREATE TABLE IF NOT EXISTS rotauth_user_epochs (
    user_id TEXT PRIMARY KEY NOT NULL,
    epoch BIGINT NOT NULL
)";
    /// Held until the migration's transaction ends; the key is arbitrary, private to this
    /// table.
    pub(crate) const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7311179421)";
    /// The migration, in this order, in one transaction: PostgreSQL's `IF NOT EXISTS` alone
    /// can still fail on a concurrent create, so replicas starting at once take turns.
    pub(crate) const MIGRATION: [&str; 4] =
        [MIGRATION_LOCK, CREATE_TABLE, CREATE_INDEX, CREATE_EPOCHS];
    /// The session, if the user's epoch is still the one the sign-in read. `FOR SHARE`
    /// holds the epoch's row (which `epoch` created) until the insert commits, so a
    /// sign-out of the user waits for it and then deletes what it wrote.
    pub(crate) const INSERT: &str =
        "INSERT INTO rotauth_sessions (client_id, user_id, record, version, expires_at)
    SELECT $1, $2, $3, $4, $5
    WHERE COALESCE((SELECT epoch FROM rotauth_user_epochs WHERE user_id = $2 FOR SHARE), 0) = $6
    ON CONFLICT (client_id) DO NOTHING";
}
