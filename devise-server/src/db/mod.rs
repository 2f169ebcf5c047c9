//! The database: accounts (email and password hash) in a `users` table of the server's
//! own, sessions in rotauth-axum's `rotauth_sessions` table through its store, both on
//! one sqlx pool, in SQLite or PostgreSQL.
//!
//! A session is stored under `"{id} {email}"` ([`User::session_owner`]): the numeric id,
//! which never changes and is never given to another account (SQLite's `AUTOINCREMENT`,
//! PostgreSQL's identity), and the email, devise's `uid`, which may change. rotauth-axum
//! checks a request's `uid` against the email part inside its loop, before anything is
//! written, and the handlers read the user from the session without a query. Every write
//! to an account names both the id and the email the session holds, so a session that
//! somehow outlived its account or its email changes nothing.
//!
//! The trait and the accounts' types are here; the statements both databases share in
//! `sql`; opening each database, with its `users` table, in `sqlite` and `postgres`.

mod postgres;
mod sql;
mod sqlite;

use std::future::Future;

use rotauth_axum::{SessionStore, StoreError};

pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// A signed-up user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The database id; sessions belong to it.
    pub id: i64,
    /// The email, lowercased; devise's `uid` for the email provider.
    pub email: String,
}

impl User {
    /// The user id the session store keeps the user's sessions under: `"{id} {email}"`
    /// (emails hold no spaces).
    pub fn session_owner(&self) -> String {
        format!("{} {}", self.id, self.email)
    }

    /// The user a session is stored under; `None` if `owner` is not a
    /// [`session_owner`](Self::session_owner).
    pub fn from_session_owner(owner: &str) -> Option<Self> {
        let (id, email) = owner.split_once(' ')?;
        Some(Self {
            id: id.parse().ok()?,
            email: email.to_owned(),
        })
    }
}

/// The `uid` part of a [`User::session_owner`], what a request claims.
pub fn uid_in_session_owner(owner: &str) -> &str {
    owner.split_once(' ').map_or(owner, |(_, email)| email)
}

/// What [`Database::set_email`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailChange {
    /// The email is changed.
    Changed,
    /// Another account has the email; nothing changed.
    Taken,
    /// No account has this id and email (deleted, or its email changed meanwhile).
    NoUser,
}

/// A user with the PHC string of their password hash.
pub struct UserWithHash {
    /// The user.
    pub user: User,
    /// The argon2 PHC string.
    pub password_hash: String,
}

/// What the request handling needs from a database: the accounts, and a session store on
/// the same database. Errors are the session store's: [`StoreError::Backend`] answers 503.
pub trait Database: Clone + Send + Sync + 'static {
    /// The session store on this database.
    type Sessions: SessionStore;

    /// The session store on this database's pool.
    fn sessions(&self) -> Self::Sessions;

    /// Creates a user; `None` if the email is taken.
    fn create_user(
        &self,
        email: &str,
        password_hash: &str,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The user with this (lowercased) email.
    fn user_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Option<UserWithHash>, StoreError>> + Send;

    /// Sets the email of `user` (its id with its current email).
    fn set_email(
        &self,
        user: &User,
        email: &str,
    ) -> impl Future<Output = Result<EmailChange, StoreError>> + Send;

    /// Sets the password hash of `user`; `false` if there is no such user (deleted, or
    /// its email changed).
    fn set_password_hash(
        &self,
        user: &User,
        password_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the password hash of `user` with a stronger hash of the same password, if
    /// it is still `old` (a password change in between wins); `false` if it was not.
    fn upgrade_password_hash(
        &self,
        user: &User,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes `user`; `false` if there is no such user. Its sessions are signed out
    /// around it by the caller (`Authenticator::change_credentials`).
    fn delete_user(&self, user: &User) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether the database answers and its tables are there (`GET /readyz`): a row at
    /// most of the `users` table, then the session store's own check
    /// (`SessionStore::ping`), so a missing table or a lost permission shows as well as a
    /// database that does not answer. The caller bounds its time.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where the database is, without any password: for the start-up log line.
    fn describe(&self) -> String;
}
