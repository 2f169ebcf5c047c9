//! A load client for `devise_server`: N clients, each signed up and then sending
//! M authenticated requests, following the tokens the responses hand them as devise's
//! JavaScript clients do (a generic tool such as `wrk` replays one token and measures 401s
//! once it rotates away).
//!
//! ```text
//! cargo run --release -p devise-server --bin devise_server -- --addr 127.0.0.1:3000 --db :memory: --quiet &
//! cargo run --release -p devise-server --bin devise_load -- --addr 127.0.0.1:3000 --clients 50 --requests 400
//! ```
//!
//! Flags (defaults in parentheses): `--addr HOST:PORT[,HOST:PORT...]` (127.0.0.1:3000):
//! with several, every request goes to a randomly chosen one (a load balancer without
//! affinity); `--clients N` (50); `--requests M` per client (200); `--burst K` parallel
//! requests per step with the same token (1); `--path P` (/demo/members_only); `--unbatch`
//! (every request asks to rotate; with `--burst` above 1 each request of a burst then
//! rotates, so keep bursts at 1 with it).
//! Prints requests per second, statuses, rotations and latency percentiles, and, from
//! servers started with `--metrics`, how many compare-and-swaps the load made them lose and
//! decide again. Loopback only: it is a test tool.

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load::run(std::env::args().skip(1).collect())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

mod load {
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::{Method, Request};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    type Http = Client<HttpConnector, Full<Bytes>>;

    struct Options {
        addrs: Vec<String>,
        clients: usize,
        requests: usize,
        burst: usize,
        path: String,
        unbatch: bool,
    }

    fn options(args: Vec<String>) -> Result<Options, String> {
        let mut o = Options {
            addrs: vec!["127.0.0.1:3000".into()],
            clients: 50,
            requests: 200,
            burst: 1,
            path: "/demo/members_only".into(),
            unbatch: false,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
            match flag.as_str() {
                "--addr" => {
                    o.addrs = value()?
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if o.addrs.is_empty() {
                        return Err("--addr needs at least one HOST:PORT".into());
                    }
                }
                "--clients" => o.clients = number(value()?)?.max(1),
                "--requests" => o.requests = number(value()?)?.max(1),
                "--burst" => o.burst = number(value()?)?.max(1),
                "--path" => o.path = value()?,
                "--unbatch" => o.unbatch = true,
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        Ok(o)
    }

    struct Auth {
        token: String,
        client: String,
        uid: String,
    }

    struct Reply {
        status: u16,
        token: Option<String>,
        latency: Duration,
    }

    async fn send(
        http: &Http,
        method: Method,
        url: &str,
        auth: Option<&Auth>,
        body: &str,
    ) -> Result<(Reply, hyper::HeaderMap), String> {
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(auth) = auth {
            builder = builder
                .header("access-token", auth.token.as_str())
                .header("token-type", "Bearer")
                .header("client", auth.client.as_str())
                .header("uid", auth.uid.as_str());
        }
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let response = http.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let token = headers
            .get("access-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok((
            Reply {
                status,
                token,
                latency: start.elapsed(),
            },
            headers,
        ))
    }

    async fn sign_up(http: &Http, base: &str, email: &str) -> Result<Auth, String> {
        let body = format!(
            r#"{{"email":"{email}","password":"load-test-password","password_confirmation":"load-test-password"}}"#
        );
        let (reply, headers) =
            send(http, Method::POST, &format!("{base}/auth"), None, &body).await?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| format!("sign-up answered {} without {name}", reply.status))
        };
        Ok(Auth {
            token: reply.token.ok_or("sign-up sent no token")?,
            client: header("client")?,
            uid: header("uid")?,
        })
    }

    struct Outcome {
        replies: Vec<(u16, Duration)>,
        rotations: u64,
    }

    /// A small xorshift: which instance each request goes to needs no cryptography.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    async fn client(
        http: Http,
        urls: Vec<String>,
        mut auth: Auth,
        o: (usize, usize, u64),
    ) -> Outcome {
        let (requests, burst, mut random) = o;
        let mut out = Outcome {
            replies: Vec::with_capacity(requests),
            rotations: 0,
        };
        let mut sent = 0;
        while sent < requests {
            let size = burst.min(requests.saturating_sub(sent));
            let mut tasks = Vec::with_capacity(size);
            for _ in 0..size {
                let pick = usize::try_from(
                    next_random(&mut random)
                        .checked_rem(urls.len() as u64)
                        .unwrap_or(0),
                )
                .unwrap_or(0);
                let url = urls.get(pick).or(urls.first()).cloned().unwrap_or_default();
                let http = http.clone();
                let auth = Auth {
                    token: auth.token.clone(),
                    client: auth.client.clone(),
                    uid: auth.uid.clone(),
                };
                tasks.push(tokio::spawn(async move {
                    send(&http, Method::GET, &url, Some(&auth), "").await
                }));
            }
            for task in tasks {
                match task.await {
                    Ok(Ok((reply, _))) => {
                        if let Some(token) = reply.token
                            && token != auth.token
                        {
                            auth.token = token;
                            out.rotations = out.rotations.saturating_add(1);
                        }
                        out.replies.push((reply.status, reply.latency));
                    }
                    _ => out.replies.push((0, Duration::ZERO)),
                }
            }
            sent = sent.saturating_add(size);
        }
        out
    }

    /// `rotauth_cas_conflicts_total` summed over the servers; `None` if one does not serve
    /// `/metrics` (started without `--metrics`).
    async fn cas_conflicts(http: &Http, bases: &[String]) -> Option<u64> {
        let mut total = 0u64;
        for base in bases {
            let request = Request::get(format!("{base}/metrics"))
                .body(Full::new(Bytes::new()))
                .ok()?;
            let response = http.request(request).await.ok()?;
            if response.status() != hyper::StatusCode::OK {
                return None;
            }
            let body = response.into_body().collect().await.ok()?.to_bytes();
            let text = String::from_utf8_lossy(&body);
            let value = text.lines().find_map(|line| {
                line.strip_prefix("rotauth_cas_conflicts_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })?;
            total = total.saturating_add(value);
        }
        Some(total)
    }

    pub(crate) async fn run(args: Vec<String>) -> Result<(), String> {
        let o = options(args)?;
        let bases: Vec<String> = o.addrs.iter().map(|a| format!("http://{a}")).collect();
        let http: Http = Client::builder(TokioExecutor::new()).build_http();
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let mut auths = Vec::with_capacity(o.clients);
        for i in 0..o.clients {
            let base = bases
                .get(i.checked_rem(bases.len()).unwrap_or(0))
                .ok_or("no address")?;
            auths.push(sign_up(&http, base, &format!("load-{run_id}-{i}@example.com")).await?);
        }
        let query = if o.unbatch { "?unbatch=true" } else { "" };
        let urls: Vec<String> = bases
            .iter()
            .map(|base| format!("{base}{}{query}", o.path))
            .collect();
        let conflicts_before = cas_conflicts(&http, &bases).await;
        let start = Instant::now();
        let tasks: Vec<_> = auths
            .into_iter()
            .enumerate()
            .map(|(i, auth)| {
                // Any non-zero seed; distinct per client.
                let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64).wrapping_mul(0x2545_f491);
                tokio::spawn(client(
                    http.clone(),
                    urls.clone(),
                    auth,
                    (o.requests, o.burst, seed | 1),
                ))
            })
            .collect();
        let mut replies = Vec::new();
        let mut rotations = 0u64;
        for task in tasks {
            let outcome = task.await.map_err(|e| e.to_string())?;
            replies.extend(outcome.replies);
            rotations = rotations.saturating_add(outcome.rotations);
        }
        let elapsed = start.elapsed();
        let conflicts = match (conflicts_before, cas_conflicts(&http, &bases).await) {
            (Some(before), Some(after)) => after.saturating_sub(before).to_string(),
            _ => "n/a (start the servers with --metrics)".to_owned(),
        };
        let count = |f: &dyn Fn(u16) -> bool| replies.iter().filter(|(s, _)| f(*s)).count();
        let mut latencies: Vec<Duration> = replies.iter().map(|(_, l)| *l).collect();
        latencies.sort_unstable();
        let percentile = |p: usize| {
            latencies
                .get(latencies.len().saturating_mul(p) / 100)
                .or(latencies.last())
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{} requests by {} clients (burst {}) to {} server(s) in {:.2}s: {:.0} req/s; 200: {}, 401: {}, 5xx: {}, failed: {}; rotations followed: {}; latency p50 {:.2}ms p99 {:.2}ms; compare-and-swap conflicts: {}",
            replies.len(),
            o.clients,
            o.burst,
            bases.len(),
            elapsed.as_secs_f64(),
            f64::from(u32::try_from(replies.len()).unwrap_or(u32::MAX)) / elapsed.as_secs_f64(),
            count(&|s| s == 200),
            count(&|s| s == 401),
            count(&|s| s >= 500),
            count(&|s| s == 0),
            rotations,
            percentile(50).as_secs_f64() * 1000.0,
            percentile(99).as_secs_f64() * 1000.0,
            conflicts,
        );
        Ok(())
    }
}
