//! The statements of [`Database`](super::Database) that SQLite and PostgreSQL share.

use std::time::Duration;

/// `impl Database for $db` on its `pool` field (the accounts) and its `sessions` field (the
/// session store, shared by the authenticator and the readiness check). The statements use
/// `$N` placeholders, which SQLite and PostgreSQL both take, so one text serves both (as
/// in rotauth-axum's own SQL stores).
macro_rules! sql_database {
    ($db:ident, $sessions:ident) => {
        impl Database for $db {
            type Sessions = $sessions;

            fn sessions(&self) -> $sessions {
                self.sessions.clone()
            }

            async fn create_user(
                &self,
                email: &str,
                password_hash: &str,
            ) -> Result<Option<User>, StoreError> {
                let row = sqlx::query(
                    "INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (email) DO NOTHING RETURNING id",
                )
                .bind(email)
                .bind(password_hash)
                .bind(i64::try_from(Timestamp::now().unix_millis()).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                row.map(|row| {
                    Ok(User {
                        id: row.try_get(0).map_err(StoreError::backend)?,
                        email: email.to_owned(),
                    })
                })
                .transpose()
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<UserWithHash>, StoreError> {
                let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                row.map(|row| {
                    Ok(UserWithHash {
                        user: User {
                            id: row.try_get(0).map_err(StoreError::backend)?,
                            email: email.to_owned(),
                        },
                        password_hash: row.try_get(1).map_err(StoreError::backend)?,
                    })
                })
                .transpose()
            }

            async fn set_email(&self, user: &User, email: &str) -> Result<EmailChange, StoreError> {
                let done = sqlx::query("UPDATE users SET email = $1 WHERE id = $2 AND email = $3")
                    .bind(email)
                    .bind(user.id)
                    .bind(&user.email)
                    .execute(&self.pool)
                    .await;
                match done {
                    Ok(done) if done.rows_affected() == 1 => Ok(EmailChange::Changed),
                    Ok(_) => Ok(EmailChange::NoUser),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Ok(EmailChange::Taken)
                    }
                    Err(e) => Err(StoreError::backend(e)),
                }
            }

            async fn set_password_hash(
                &self,
                user: &User,
                password_hash: &str,
            ) -> Result<bool, StoreError> {
                let done =
                    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND email = $3")
                        .bind(password_hash)
                        .bind(user.id)
                        .bind(&user.email)
                        .execute(&self.pool)
                        .await
                        .map_err(StoreError::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn upgrade_password_hash(
                &self,
                user: &User,
                old: &str,
                new: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE users SET password_hash = $1
                     WHERE id = $2 AND email = $3 AND password_hash = $4",
                )
                .bind(new)
                .bind(user.id)
                .bind(&user.email)
                .bind(old)
                .execute(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_user(&self, user: &User) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM users WHERE id = $1 AND email = $2")
                    .bind(user.id)
                    .bind(&user.email)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1 FROM users LIMIT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                self.sessions().ping().await
            }

            fn describe(&self) -> String {
                self.describe.clone()
            }
        }
    };
}

pub(super) use sql_database;

/// How long a statement waits for SQLite's write lock, or a request for a pooled
/// connection, before the request answers 503.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// Both pools hand out connections without pinging them first (sqlx pings by default, a
// round trip per statement): a connection that died since its last use fails its
// statement, that one request answers 503 with `Retry-After` (never a logout: nothing is
// sent that was not stored), and sqlx drops the connection. The session store takes up to
// `connections` more from the pool and keeps them, which it never pings either.
