//! What the SQLite and PostgreSQL stores on sqlx share: the same tables, written with the
//! same statements. Both drivers take `$N` placeholders, so one text serves both; only the
//! pool type, the column types of `CREATE TABLE` and the guarded insert differ.
//!
//! A user's epoch is a row of `rotauth_user_epochs`, created by the first
//! [`epoch`](crate::SessionStore::epoch) read; signing a user out moves it on in the same
//! transaction that deletes the sessions. The insert reads it in the same statement that
//! writes the session (PostgreSQL also locks it `FOR SHARE` there, so a sign-out waits
//! for the insert to commit and then deletes what it wrote; SQLite runs one writer at a
//! time). The statements' texts are in `super::statements`, which the tokio-postgres store
//! runs too.
//!
//! Each statement runs on a connection the store holds (`super::connections`), not on
//! the pool: a request that rotates runs two, and sqlx's pool pings a connection every
//! time one goes back to it.
//!
//! The implementation is a macro rather than a generic over `sqlx::Database`: the generic
//! needs an executor, encode, decode and type bound per statement and column, which says
//! more than the statements do. The names it uses (`SessionStore`, `Record`, `sql_int`,
//! `Row`, …) resolve where it is invoked.

/// `impl SessionStore for $store` on its `connections` field, tables `rotauth_sessions` and
/// `rotauth_user_epochs`; `$insert` is the guarded insert (parameters: client id, user id,
/// record, version, expiry, epoch).
macro_rules! sql_session_store {
    ($store:ident, $insert:expr) => {
        impl SessionStore for $store {
            async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
                let mut lease = self.connections.lease().await?;
                let row = sqlx::query(super::statements::LOAD)
                    .bind(&client_id.as_bytes()[..])
                    .fetch_optional(lease.conn()?)
                    .await;
                let row = lease.check(row)?;
                drop(lease);
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

            async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
                let select = async || -> Result<Option<i64>, StoreError> {
                    let mut lease = self.connections.lease().await?;
                    let epoch = sqlx::query_scalar::<_, i64>(super::statements::SELECT_EPOCH)
                        .bind(user_id)
                        .fetch_optional(lease.conn()?)
                        .await;
                    lease.check(epoch)
                };
                let epoch = match select().await? {
                    Some(epoch) => epoch,
                    None => {
                        let mut lease = self.connections.lease().await?;
                        let done = sqlx::query(super::statements::CREATE_EPOCH)
                            .bind(user_id)
                            .execute(lease.conn()?)
                            .await;
                        lease.check(done)?;
                        drop(lease);
                        select()
                            .await?
                            .ok_or_else(|| StoreError::backend("the epoch row vanished"))?
                    }
                };
                u64::try_from(epoch).map_err(|_| StoreError::backend("negative epoch"))
            }

            async fn insert(
                &self,
                user_id: &str,
                epoch: u64,
                record: &Record,
            ) -> Result<(), StoreError> {
                let client_id = record.client_id();
                let client_id = &client_id.as_bytes()[..];
                let mut lease = self.connections.lease().await?;
                let done = sqlx::query($insert)
                    .bind(client_id)
                    .bind(user_id)
                    .bind(record.as_bytes())
                    .bind(sql_int(record.version())?)
                    .bind(sql_int(record.expires_at().unix_millis())?)
                    .bind(sql_int(epoch)?)
                    .execute(lease.conn()?)
                    .await;
                if lease.check(done)?.rows_affected() == 1 {
                    return Ok(());
                }
                // Nothing written: a taken client id, or the epoch moved.
                let taken = sqlx::query(super::statements::TAKEN)
                    .bind(client_id)
                    .fetch_optional(lease.conn()?)
                    .await;
                Err(if lease.check(taken)?.is_some() {
                    StoreError::Duplicate
                } else {
                    StoreError::EpochChanged
                })
            }

            async fn compare_and_swap(
                &self,
                expected_version: u64,
                record: &Record,
            ) -> Result<Swap, StoreError> {
                let mut lease = self.connections.lease().await?;
                let done = sqlx::query(super::statements::SWAP)
                    .bind(record.as_bytes())
                    .bind(sql_int(record.version())?)
                    .bind(sql_int(record.expires_at().unix_millis())?)
                    .bind(&record.client_id().as_bytes()[..])
                    .bind(sql_int(expected_version)?)
                    .execute(lease.conn()?)
                    .await;
                Ok(if lease.check(done)?.rows_affected() == 1 {
                    Swap::Swapped
                } else {
                    Swap::Lost
                })
            }

            async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
                let mut lease = self.connections.lease().await?;
                let done = sqlx::query(super::statements::DELETE)
                    .bind(&client_id.as_bytes()[..])
                    .execute(lease.conn()?)
                    .await;
                Ok(lease.check(done)?.rows_affected() > 0)
            }

            async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
                let mut lease = self.connections.lease().await?;
                let rows = sqlx::query(super::statements::LIST)
                    .bind(user_id)
                    .fetch_all(lease.conn()?)
                    .await;
                let rows = lease.check(rows)?;
                drop(lease);
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
                // No session has an empty client id: `keep = None` deletes them all.
                let keep = keep.map_or_else(Vec::new, |keep| keep.as_bytes().to_vec());
                let mut lease = self.connections.lease().await?;
                let done = {
                    let conn = lease.conn()?;
                    async move {
                        let mut tx = sqlx::Connection::begin(conn).await?;
                        // The epoch first: in PostgreSQL this waits for inserts that hold
                        // the row, so the delete below sees what they wrote.
                        sqlx::query(super::statements::NEXT_EPOCH)
                            .bind(user_id)
                            .execute(&mut *tx)
                            .await?;
                        let done = sqlx::query(super::statements::DELETE_USER_SESSIONS)
                            .bind(user_id)
                            .bind(&keep[..])
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok(done)
                    }
                    .await
                };
                let done = lease.check(done)?;
                Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
            }

            async fn rename_user(&self, from: &str, to: &str) -> Result<usize, StoreError> {
                let mut lease = self.connections.lease().await?;
                let done = {
                    let conn = lease.conn()?;
                    async move {
                        let mut tx = sqlx::Connection::begin(conn).await?;
                        sqlx::query(super::statements::NEXT_EPOCH)
                            .bind(from)
                            .execute(&mut *tx)
                            .await?;
                        let done = sqlx::query(super::statements::RENAME_USER)
                            .bind(from)
                            .bind(to)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok(done)
                    }
                    .await
                };
                let done = lease.check(done)?;
                Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
            }

            async fn sessions_per_key(
                &self,
                now: rotauth::Timestamp,
            ) -> Result<Vec<(rotauth::KeyId, u64)>, StoreError> {
                let mut census = super::KeyCensus::default();
                // Pages in client id order, each starting after the last id of the one
                // before: no cursor held open, memory bounded by one page.
                let mut after: Vec<u8> = Vec::new();
                loop {
                    let mut lease = self.connections.lease().await?;
                    let rows = sqlx::query(super::statements::CENSUS)
                        .bind(sql_int(now.unix_millis())?)
                        .bind(&after[..])
                        .bind(super::statements::CENSUS_PAGE)
                        .fetch_all(lease.conn()?)
                        .await;
                    let rows = lease.check(rows)?;
                    drop(lease);
                    let Some(last) = rows.last() else { break };
                    after = last.try_get(0).map_err(StoreError::backend)?;
                    for row in &rows {
                        let bytes = Zeroizing::new(
                            row.try_get::<Vec<u8>, _>(1).map_err(StoreError::backend)?,
                        );
                        census.count_bytes(&bytes, now);
                    }
                    if i64::try_from(rows.len()).unwrap_or(i64::MAX)
                        < super::statements::CENSUS_PAGE
                    {
                        break;
                    }
                }
                Ok(census.into_counts())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query(super::statements::PING)
                    .execute(&self.pool)
                    .await
                    .map(drop)
                    .map_err(StoreError::backend)
            }
        }
    };
}

pub(crate) use sql_session_store;
