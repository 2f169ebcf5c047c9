//! Store faults under load: 50 clients follow their tokens over real HTTP through the
//! layer (the load of `common::load`, with a 200 ms batch window so that rotations happen
//! often) while the test restarts its own PostgreSQL or Redis server, fails it over to a
//! replica that missed the last writes, or cuts or stalls the network to it with a proxy.
//! Each case prints its figures: requests served, 503s, 401s, how long until every client
//! was served again, and how many clients had to sign in again (a 401 is a sign-out).
//!
//! No fault signs a client out, except a restart of a Redis that keeps nothing (no RDB, no
//! append-only file), which loses every session: that case asserts that it does. The
//! authenticator rides out each outage (its `store_patience`, 5 s, is longer than any of
//! them); one more case gives up on the store after 0.5 s of a 2 s outage, so that requests
//! answer 503 and clients send them again, and shows Recover mode keeping everyone signed
//! in there.
//!
//! Every case starts and stops its own servers on free loopback ports (see
//! `common::servers`), so it needs PostgreSQL's and Redis's programs, which
//! `bash scripts/with-services.sh` installs when they are missing; the cases run one at a
//! time, since their figures are timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_errors_doc,
    missing_docs
)]

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::load::{Held, Kind, Load, Report, Retry, Shape};
use common::proxy::Proxy;
use common::{rotator, serve};
use rotauth::Config;
use rotauth_axum::{Authenticator, DeviseProtocol, SessionStore};

const CLIENTS: usize = 50;
const WINDOW: Duration = Duration::from_millis(200);
/// Load before the fault.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long the network to the store is cut or stalled.
const OUTAGE: Duration = Duration::from_secs(2);
/// Load while a replica misses the primary's writes.
const LAG: Duration = Duration::from_secs(1);
/// Load after every client was served again.
const SETTLE: Duration = Duration::from_secs(1);
/// The longest the test waits for every client to be served again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);

fn shape() -> Shape {
    Shape {
        clients: CLIENTS,
        // Time ends the load, not a count.
        requests: usize::MAX,
        window: WINDOW,
        // `Retry-After: 1` says a second; these clients retry sooner, for finer figures.
        retry: Some(Retry {
            pause: Duration::from_millis(100),
            attempts: 150,
        }),
    }
}

/// Runs one case on a runtime of its own, one case at a time.
fn case(test: impl Future<Output = ()>) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// The app: the layer over `store` with the devise protocol, a 200 ms batch window, and
/// the authenticator's defaults otherwise (Strict mode, five seconds of patience with a
/// failing store).
async fn app<S: SessionStore + Clone>(store: S) -> Arc<common::Server> {
    let config = Config::builder().batch_window(WINDOW).build().unwrap();
    Arc::new(
        serve(
            Authenticator::new(rotator(config), store),
            DeviseProtocol::new(),
        )
        .await,
    )
}

/// What a case measured: the load's report, when the fault began and when the store was
/// back (on the load's clock).
struct Figures {
    case: &'static str,
    report: Report,
    fault: Duration,
    back: Duration,
}

impl Figures {
    fn print(&self) {
        let r = &self.report;
        let served_again = r.every_client_served_after(self.back).map_or_else(
            || "never".to_owned(),
            |d| format!("{:.2} s", d.as_secs_f64()),
        );
        eprintln!(
            "faults[{}]: {} requests served, {} x 503, {} x 401, {} given up; {} of {} clients \
             signed in again; store out for {:.2} s; every client served {} after it was \
             back; longest a client went unserved {:.2} s; load {:.1} s",
            self.case,
            r.served(),
            r.count(Kind::Request, 503) + r.count(Kind::SignIn, 503),
            r.count(Kind::Request, 401),
            r.gave_up,
            r.clients_signed_in_again,
            CLIENTS,
            (self.back - self.fault).as_secs_f64(),
            served_again,
            r.longest_unserved().as_secs_f64(),
            r.elapsed.as_secs_f64(),
        );
    }

    /// Nobody signed out, nothing given up, every client served again. A 401 is explained
    /// by what `store` holds for the session it refused.
    async fn assert_no_client_signed_out<S: SessionStore>(&self, store: &S) {
        let r = &self.report;
        let mut refusals = Vec::new();
        // On the load's clock, in seconds.
        let clock = |unix_ms: u64| (unix_ms as f64 - r.started_unix_ms as f64) / 1000.0;
        for refused in &r.refused {
            let stored = match store.load(refused.client_id).await {
                Ok(Some(stored)) => {
                    let session = rotauth::Session::decode(stored.record.as_bytes()).unwrap();
                    format!(
                        "the record is at generation {}, rotated at {:.3} s",
                        session.generation(),
                        clock(session.rotated_at().unix_millis())
                    )
                }
                Ok(None) => "no record".to_owned(),
                Err(e) => format!("the store failed: {e}"),
            };
            refusals.push(format!(
                "{}: presented generation {} (sent at {:.3} s, refused at {:.3} s), {stored}",
                refused.client_id,
                refused.presented,
                refused.sent.as_secs_f64(),
                refused.at.as_secs_f64(),
            ));
        }
        refusals.push(format!(
            "(the fault began at {:.3} s, the store was back at {:.3} s)",
            self.fault.as_secs_f64(),
            self.back.as_secs_f64()
        ));
        assert!(
            r.refused.is_empty(),
            "{}: no 401, but {} clients were signed out:\n{}",
            self.case,
            r.clients_signed_in_again,
            refusals.join("\n")
        );
        assert_eq!(r.gave_up, 0, "{}: no request given up", self.case);
        assert!(
            r.every_client_served_after(self.back).is_some(),
            "{}: every client served again",
            self.case
        );
    }
}

/// Runs the load on `server`: `WARM_UP`, then `fault` (which returns when the fault began,
/// on the load's clock, once the store is back), then until every client was served again
/// and `SETTLE` more.
async fn under_load(
    case: &'static str,
    server: Arc<common::Server>,
    fault: impl AsyncFnOnce(&Load) -> Duration,
) -> Figures {
    let load = Load::start(server, shape(), case).await;
    load.run_for(WARM_UP).await;
    let began = fault(&load).await;
    let back = load.now();
    load.run_until_served_after(back, RECOVERY_LIMIT, SETTLE)
        .await;
    let figures = Figures {
        case,
        report: load.finish().await,
        fault: began,
        back,
    };
    figures.print();
    figures
}

/// How the network to the store fails.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Connections reset, new ones refused.
    Cut,
    /// Every byte held, both ways.
    Stall,
}

/// Makes the store unreachable through `proxy` for `OUTAGE`, then restores it. Returns when
/// the outage began.
async fn outage(load: &Load, proxy: &Proxy, how: Outage) -> Duration {
    let began = load.now();
    match how {
        Outage::Cut => proxy.cut(),
        Outage::Stall => proxy.stall(),
    }
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    began
}

/// How many clients hold a token newer than their record in `store` (and by how many
/// generations at most); panics on a missing record.
async fn behind<S: SessionStore>(store: &S, held: &[(String, Held)]) -> (usize, u64) {
    let (mut behind, mut most) = (0, 0);
    for (user, held) in held {
        let stored = store
            .load(held.client_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{user}: no record"));
        let stored = rotauth::Session::decode(stored.record.as_bytes())
            .unwrap()
            .generation();
        let holds = held.token.generation();
        if stored < holds {
            behind += 1;
            most = most.max(holds - stored);
        }
    }
    (behind, most)
}

/// Checks, while the load is paused after a failover, that the new primary's records are
/// older than the tokens some clients hold (the replica missed their rotations), and says
/// how many and by how much.
async fn records_behind<S: SessionStore>(case: &str, store: &S, load: &Load) {
    let (behind, most) = behind(store, &load.held()).await;
    eprintln!(
        "faults[{case}]: {behind} of {CLIENTS} records on the promoted replica are older \
         than the token their client holds, by up to {most} generations"
    );
    assert!(
        behind > 0,
        "{case}: the replica missed rotations (its records are behind the clients' tokens)"
    );
}

mod postgres {
    use std::net::SocketAddr;
    use std::time::Duration;

    use rotauth_axum::PostgresStore;
    use sqlx::postgres::PgPoolOptions;

    use super::common::load::{Load, check_records};
    use super::common::proxy::Proxy;
    use super::common::servers::Postgres;
    use super::{LAG, Outage, app, case, outage, records_behind, under_load};

    /// A store on a pool to `addr`, as an app makes it (sqlx's defaults but the size).
    async fn store(addr: SocketAddr) -> PostgresStore {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(&Postgres::url(addr))
            .await
            .unwrap();
        PostgresStore::new(pool)
    }

    /// `pg_ctl restart -m fast` on the test's own cluster.
    #[test]
    fn restarted() {
        case(async {
            let cluster = Postgres::start().await;
            let store = store(cluster.addr()).await;
            store.migrate().await.unwrap();
            let server = app(store.clone()).await;
            let figures = under_load("PostgreSQL restarted", server, async |load: &Load| {
                let began = load.now();
                cluster.restart_fast().await;
                began
            })
            .await;
            figures.assert_no_client_signed_out(&store).await;
            check_records(&store, &figures.report).await;
        });
    }

    /// The network cut (connections reset, new ones refused) for 2 s, then restored.
    #[test]
    fn network_cut() {
        through_the_network("PostgreSQL network cut", Outage::Cut);
    }

    /// The network stalled (every byte held, both ways) for 2 s, then restored.
    #[test]
    fn network_stalled() {
        through_the_network("PostgreSQL network stalled", Outage::Stall);
    }

    /// An outage of the network between the app and PostgreSQL, under load.
    fn through_the_network(label: &'static str, kind: Outage) {
        case(async {
            let cluster = Postgres::start().await;
            let proxy = Proxy::start(cluster.addr()).await;
            let store = store(proxy.addr()).await;
            store.migrate().await.unwrap();
            let server = app(store.clone()).await;
            let figures = under_load(label, server, async |load: &Load| {
                outage(load, &proxy, kind).await
            })
            .await;
            figures.assert_no_client_signed_out(&store).await;
            check_records(&store, &figures.report).await;
        });
    }

    /// Waits until `standby` streams from its primary.
    async fn streaming(standby: &Postgres) {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&Postgres::url(standby.addr()))
            .await
            .unwrap();
        for _ in 0..500 {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM pg_stat_wal_receiver")
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            if status.as_deref() == Some("streaming") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the standby does not stream");
    }

    /// A streaming standby (`pg_basebackup -R`) misses the primary's last writes (its
    /// replication link stalls while the clients rotate for a second); the load pauses,
    /// the primary is killed, the standby promoted (`pg_ctl promote`) and the app's
    /// endpoint moved to it; its records are behind the clients' tokens when the load
    /// resumes, and the fast-forward repairs them.
    #[test]
    fn failover_to_a_standby_that_missed_writes() {
        const CASE: &str = "PostgreSQL failover";
        case(async {
            let primary = Postgres::start().await;
            let replication = Proxy::start(primary.addr()).await;
            let standby = Postgres::standby_of(replication.addr()).await;
            // The address the app connects to, which a failover moves (a virtual IP, a
            // pooler, a DNS name): its connections are reset and new ones reach the standby.
            let endpoint = Proxy::start(primary.addr()).await;
            let app_store = store(endpoint.addr()).await;
            app_store.migrate().await.unwrap();
            streaming(&standby).await;
            let server = app(app_store.clone()).await;
            let figures = under_load(CASE, server, async |load: &Load| {
                replication.stall();
                load.run_for(LAG).await;
                let paused = load.pause().await;
                let began = load.now();
                primary.kill().await;
                standby.promote().await;
                endpoint.retarget(standby.addr());
                let promoted = store(standby.addr()).await;
                records_behind(CASE, &promoted, load).await;
                drop(paused);
                began
            })
            .await;
            figures.assert_no_client_signed_out(&app_store).await;
            check_records(&app_store, &figures.report).await;
        });
    }
}

mod redis {
    use std::net::SocketAddr;
    use std::time::Duration;

    use std::sync::Arc;

    use redis::aio::ConnectionManager;
    use rotauth::{Config, Mode};
    use rotauth_axum::{Authenticator, DeviseProtocol, RedisStore};

    use super::common::load::{Kind, Load, check_records};
    use super::common::proxy::Proxy;
    use super::common::servers::{Persistence, Redis};
    use super::common::{rotator, serve};
    use super::{CLIENTS, LAG, Outage, WINDOW, app, case, outage, records_behind, under_load};

    /// A store on a connection manager to `addr`, with the redis crate's defaults (a
    /// 500 ms response timeout, six reconnection attempts).
    async fn store(addr: SocketAddr) -> RedisStore {
        let client = ::redis::Client::open(Redis::url(addr)).unwrap();
        RedisStore::new(ConnectionManager::new(client).await.unwrap())
    }

    /// With `appendonly yes` and `appendfsync always`, every write acknowledged survives
    /// the restart (SIGTERM, then the same port and files): nobody is signed out.
    #[test]
    fn restarted_with_append_only_file() {
        const CASE: &str = "Redis restarted, append-only file";
        case(async {
            let mut server = Redis::start(Persistence::AppendOnly, None).await;
            let store = store(server.addr()).await;
            let figures = under_load(CASE, app(store.clone()).await, async |load: &Load| {
                let began = load.now();
                server.restart().await;
                began
            })
            .await;
            figures.assert_no_client_signed_out(&store).await;
            check_records(&store, &figures.report).await;
        });
    }

    /// Without persistence a restart loses every session: every client is refused (401)
    /// and signs in again. The fix is persistence (above) or a replica to fail over to
    /// (below).
    #[test]
    fn restarted_without_persistence_signs_everyone_out() {
        const CASE: &str = "Redis restarted, no persistence";
        case(async {
            let mut server = Redis::start(Persistence::None, None).await;
            let store = store(server.addr()).await;
            let figures = under_load(CASE, app(store.clone()).await, async |load: &Load| {
                let began = load.now();
                server.restart().await;
                began
            })
            .await;
            let r = &figures.report;
            assert_eq!(
                r.clients_signed_in_again, CLIENTS,
                "every session was lost: every client signed in again"
            );
            assert!(r.count(Kind::Request, 401) >= CLIENTS);
            assert_eq!(r.gave_up, 0);
            assert!(r.every_client_served_after(figures.back).is_some());
            check_records(&store, r).await;
        });
    }

    /// The network cut (connections reset, new ones refused) for 2 s, then restored.
    #[test]
    fn network_cut() {
        through_the_network("Redis network cut", Outage::Cut);
    }

    /// The network stalled (every byte held, both ways) for 2 s, then restored.
    #[test]
    fn network_stalled() {
        through_the_network("Redis network stalled", Outage::Stall);
    }

    /// An outage of the network between the app and Redis, under load.
    fn through_the_network(label: &'static str, kind: Outage) {
        case(async {
            let server = Redis::start(Persistence::None, None).await;
            let proxy = Proxy::start(server.addr()).await;
            let store = store(proxy.addr()).await;
            let figures = under_load(label, app(store.clone()).await, async |load: &Load| {
                outage(load, &proxy, kind).await
            })
            .await;
            figures.assert_no_client_signed_out(&store).await;
            check_records(&store, &figures.report).await;
        });
    }

    /// The network stalled for 2 s again, but the app gives up on the store after 0.5 s
    /// (`store_patience`): requests answer 503 and are sent again, and rotations whose
    /// fate was unknown when their request gave up land when the network is back (the
    /// stalled commands are delivered then), unannounced. In Strict mode their clients,
    /// holding the token before, would be refused after the window; Recover mode
    /// reissues the token once, and nobody is signed out.
    #[test]
    fn network_stalled_beyond_the_patience_in_recover_mode() {
        const CASE: &str = "Redis network stalled beyond the patience, Recover mode";
        case(async {
            let server = Redis::start(Persistence::None, None).await;
            let proxy = Proxy::start(server.addr()).await;
            let store = store(proxy.addr()).await;
            let config = Config::builder()
                .batch_window(WINDOW)
                .mode(Mode::Recover)
                .build()
                .unwrap();
            let auth = Authenticator::new(rotator(config), store.clone())
                .store_patience(Duration::from_millis(500));
            let server = Arc::new(serve(auth, DeviseProtocol::new()).await);
            let figures = under_load(CASE, server, async |load: &Load| {
                outage(load, &proxy, Outage::Stall).await
            })
            .await;
            figures.assert_no_client_signed_out(&store).await;
            assert!(
                figures.report.count(Kind::Request, 503) > 0,
                "requests gave up on the store"
            );
            check_records(&store, &figures.report).await;
        });
    }

    /// Waits until `replica` has synchronised with its primary.
    async fn synchronised(replica: &Redis) {
        let client = ::redis::Client::open(Redis::url(replica.addr())).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for _ in 0..500 {
            let info: String = ::redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap();
            if info.contains("master_link_status:up") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the replica does not synchronise");
    }

    /// A replica (`--replicaof`) misses the primary's last writes (its replication link
    /// stalls while the clients rotate for a second); the load pauses, the primary is
    /// killed, the replica promoted (`REPLICAOF NO ONE`) and the app's endpoint moved to
    /// it; its records are behind the clients' tokens when the load resumes, and the
    /// fast-forward repairs them.
    #[test]
    fn failover_to_a_replica_that_missed_writes() {
        const CASE: &str = "Redis failover";
        case(async {
            let mut primary = Redis::start(Persistence::None, None).await;
            let replication = Proxy::start(primary.addr()).await;
            let replica = Redis::start(Persistence::None, Some(replication.addr())).await;
            // The address the app connects to, which a failover moves (a virtual IP, a
            // proxy that follows Sentinel): its connections are reset and new ones reach
            // the replica.
            let endpoint = Proxy::start(primary.addr()).await;
            let app_store = store(endpoint.addr()).await;
            synchronised(&replica).await;
            let server = app(app_store.clone()).await;
            let figures = under_load(CASE, server, async |load: &Load| {
                replication.stall();
                load.run_for(LAG).await;
                let paused = load.pause().await;
                let began = load.now();
                primary.kill().await;
                let client = ::redis::Client::open(Redis::url(replica.addr())).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let () = ::redis::cmd("REPLICAOF")
                    .arg("NO")
                    .arg("ONE")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                endpoint.retarget(replica.addr());
                let promoted = store(replica.addr()).await;
                records_behind(CASE, &promoted, load).await;
                drop(paused);
                began
            })
            .await;
            figures.assert_no_client_signed_out(&app_store).await;
            check_records(&app_store, &figures.report).await;
        });
    }
}
