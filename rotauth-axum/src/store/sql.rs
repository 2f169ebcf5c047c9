//! What the SQLite and PostgreSQL stores share: the same table, written with the same
//! statements. Both drivers take `$N` placeholders, so one text serves both; only the pool
//! type and the column types of `CREATE TABLE` differ, which each store's module keeps.
//!
//! The implementation is a macro rather than a generic over `sqlx::Database`: the generic
//! needs an executor, encode, decode and type bound per statement and column, which says
//! more than the statements do. The names it uses (`SessionStore`, `Record`, `sql_int`,
//! `Row`, …) resolve where it is invoked.

/// `impl SessionStore for $store` on its `pool` field, table `rotauth_sessions`.
macro_rules! sql_session_store {
    ($store:ident) => {
        impl SessionStore for $store {
            async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
                let row = sqlx::query(
                    "SELECT user_id, record FROM rotauth_sessions WHERE client_id = $1",
                )
                .bind(&client_id.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let user_id: String = row.try_get(0).map_err(StoreError::backend)?;
                let bytes =
                    Zeroizing::new(row.try_get::<Vec<u8>, _>(1).map_err(StoreError::backend)?);
                Ok(Some(StoredSession {
                    user_id,
                    record: Record::from_bytes(&bytes)?,
                }))
            }

            async fn insert(&self, user_id: &str, record: &Record) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "INSERT INTO rotauth_sessions (client_id, user_id, record, version, expires_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO NOTHING",
                )
                .bind(&record.client_id().as_bytes()[..])
                .bind(user_id)
                .bind(record.as_bytes())
                .bind(sql_int(record.version())?)
                .bind(sql_int(record.expires_at().unix_millis())?)
                .execute(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Duplicate)
                }
            }

            async fn compare_and_swap(
                &self,
                expected_version: u64,
                record: &Record,
            ) -> Result<Swap, StoreError> {
                let done = sqlx::query(
                    "UPDATE rotauth_sessions SET record = $1, version = $2, expires_at = $3
                     WHERE client_id = $4 AND version = $5",
                )
                .bind(record.as_bytes())
                .bind(sql_int(record.version())?)
                .bind(sql_int(record.expires_at().unix_millis())?)
                .bind(&record.client_id().as_bytes()[..])
                .bind(sql_int(expected_version)?)
                .execute(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                Ok(if done.rows_affected() == 1 {
                    Swap::Swapped
                } else {
                    Swap::Lost
                })
            }

            async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM rotauth_sessions WHERE client_id = $1")
                    .bind(&client_id.as_bytes()[..])
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
                let rows = sqlx::query(
                    "SELECT client_id, expires_at FROM rotauth_sessions WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                rows.iter()
                    .map(|row| {
                        let client: Vec<u8> = row.try_get(0).map_err(StoreError::backend)?;
                        let expires: i64 = row.try_get(1).map_err(StoreError::backend)?;
                        Ok(SessionSummary {
                            client_id: client_id_from_bytes(&client)?,
                            expires_at: rotauth::Timestamp::from_unix_millis(
                                u64::try_from(expires).unwrap_or(0),
                            ),
                        })
                    })
                    .collect()
            }

            async fn delete_user_sessions(
                &self,
                user_id: &str,
                keep: Option<ClientId>,
            ) -> Result<usize, StoreError> {
                let done =
                    match keep {
                        Some(keep) => sqlx::query(
                            "DELETE FROM rotauth_sessions WHERE user_id = $1 AND client_id <> $2",
                        )
                        .bind(user_id)
                        .bind(&keep.as_bytes()[..])
                        .execute(&self.pool)
                        .await,
                        None => {
                            sqlx::query("DELETE FROM rotauth_sessions WHERE user_id = $1")
                                .bind(user_id)
                                .execute(&self.pool)
                                .await
                        }
                    }
                    .map_err(StoreError::backend)?;
                Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
            }
        }
    };
}

pub(crate) use sql_session_store;
