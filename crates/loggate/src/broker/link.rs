//! A connection that stays up: a bounded wait for the broker at start, then a
//! supervisor that notices a lost connection and reconnects with backoff,
//! re-running the session's preparation (topology, channels) each time.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Brokers, Error};
use crate::metrics::{self, Connection as Kind};
use crate::sync::lock;

/// What a link keeps per connection: the connection and whatever was prepared on it.
pub(crate) trait Session: Send + Sync + 'static {
    fn connection(&self) -> &Connection;
}

/// Builds a session on a fresh connection (declare topology, open channels).
pub(crate) type Prepare<S> =
    Arc<dyn Fn(Connection) -> Pin<Box<dyn Future<Output = Result<S, Error>> + Send>> + Send + Sync>;

/// Longest single connect-and-prepare attempt, so a black-holed broker cannot hang us.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: short at first, then once a second (cheap, and it keeps
/// the time from "broker back" to "gateway serving" under the 5 s target).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the supervisor double-checks the connection status, in case an
/// error event was missed.
const STATUS_POLL: Duration = Duration::from_millis(500);

/// How the first connection is made: wait up to `wait` for the broker; if it
/// does not answer by then, fail if `required`, otherwise start without it
/// and keep trying in the background (the gateway does when it has a spool).
#[derive(Debug, Clone, Copy)]
pub struct FirstConnect {
    pub wait: Duration,
    pub required: bool,
}

/// One supervised AMQP connection and the session prepared on it.
pub(crate) struct Link<S> {
    endpoint: Brokers,
    /// The live session; `None` while reconnecting.
    current: watch::Receiver<Option<Arc<S>>>,
    /// `true` while the broker blocks the connection (a memory or disk alarm).
    blocked: watch::Receiver<bool>,
    /// Cancelled to close the connection and end the supervisor.
    stop: CancellationToken,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl<S: Session> Link<S> {
    /// Connects as `first` says, then keeps the connection up in the
    /// background. `name` shows in RabbitMQ's connection list. A link that
    /// started without the broker is not connected until it gets through.
    pub(crate) async fn establish(
        endpoint: Brokers,
        name: String,
        kind: Kind,
        first: FirstConnect,
        prepare: Prepare<S>,
    ) -> Result<Link<S>, Error> {
        let FirstConnect { wait, required } = first;
        let deadline = Instant::now() + wait;
        let mut delay = BACKOFF_FIRST;
        let first = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match open(
                &endpoint,
                None,
                &name,
                &prepare,
                remaining.min(ATTEMPT_TIMEOUT),
            )
            .await
            {
                Ok(opened) => break Some(opened),
                Err(reason) => {
                    if Instant::now() + delay >= deadline {
                        if !required {
                            warn!(%endpoint, %reason, connection = %name, "RabbitMQ is unreachable; starting without it and retrying in the background");
                            break None;
                        }
                        return Err(Error::Unreachable {
                            endpoint,
                            waited: wait,
                            reason,
                        });
                    }
                    info!(%endpoint, %reason, "waiting for RabbitMQ");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        };
        let (session, events) = match first {
            Some((session, events, used)) => {
                info!(broker = %endpoint.get(used), connection = %name, "connected to RabbitMQ");
                (Some(Arc::new(session)), Some((events, used)))
            }
            None => (None, None),
        };
        metrics::broker_connected(kind, session.is_some());

        let (tx, current) = watch::channel(session);
        let (blocked_tx, blocked) = watch::channel(false);
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(
            endpoint.clone(),
            name,
            kind,
            prepare,
            (tx, blocked_tx),
            events,
            stop.clone(),
        ));
        Ok(Link {
            endpoint,
            current,
            blocked,
            stop,
            supervisor: std::sync::Mutex::new(Some(supervisor)),
        })
    }

    /// The live session, or `NotConnected` while the link is reconnecting.
    pub(crate) fn session(&self) -> Result<Arc<S>, Error> {
        if self.stop.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        self.current
            .borrow()
            .clone()
            .ok_or_else(|| Error::NotConnected(self.endpoint.clone()))
    }

    /// `true` while connected and not blocked by a broker alarm; changes
    /// when either does.
    pub(crate) fn connected(&self) -> watch::Receiver<bool> {
        watch_ready(self.current.clone(), self.blocked.clone())
    }

    /// Closes the connection and stops reconnecting.
    pub(crate) async fn close(&self) {
        self.stop.cancel();
        let supervisor = lock(&self.supervisor).take();
        if let Some(task) = supervisor {
            let _ = task.await;
        }
    }
}

type Events = Pin<Box<dyn futures::Stream<Item = Event> + Send>>;

/// One attempt: each broker in turn, starting after `last`, until one
/// connects and prepares, all within `timeout`. Returns the session, its
/// events and which broker it is on. The error is a description safe to log
/// (it never contains a URL).
async fn open<S: Session>(
    brokers: &Brokers,
    last: Option<usize>,
    name: &str,
    prepare: &Prepare<S>,
    timeout: Duration,
) -> Result<(S, Events, usize), String> {
    let attempt = async {
        let mut reasons = Vec::new();
        for (index, endpoint) in brokers.starting_after(last) {
            let properties = ConnectionProperties::default().with_connection_name(name.into());
            let connected = async {
                let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
                // The TLS settings apply to amqps:// only; lapin connects an
                // amqp:// URL in plaintext whatever they say.
                let connection = Connection::connect_uri_with_config(
                    endpoint.uri(),
                    properties,
                    brokers.tls_config(),
                    runtime,
                )
                .await
                .map_err(|e| describe_connect_error(&e, endpoint.is_tls()))?;
                // Listen before anything can go wrong, or the first error is missed.
                let events: Events = Box::pin(connection.events_listener());
                let session = prepare(connection).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((session, events, index))
            };
            match connected.await {
                Ok(opened) => return Ok(opened),
                // With one broker, the caller's message already names it.
                Err(reason) if brokers.len() == 1 => reasons.push(reason),
                Err(reason) => reasons.push(format!("{endpoint}: {reason}")),
            }
        }
        Err(reasons.join("; "))
    };
    match tokio::time::timeout(timeout.max(Duration::from_millis(100)), attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Why a connection could not be opened, in words a user can act on. A TLS
/// handshake the gateway refused says so (rustls's reason follows), rather
/// than surfacing as a bare I/O error. lapin's errors carry no URL, so no
/// password can reach this text.
fn describe_connect_error(error: &lapin::Error, tls: bool) -> String {
    let text = error.to_string();
    if !tls {
        return text;
    }
    if text.contains("invalid peer certificate") {
        return format!(
            "TLS: RabbitMQ's certificate was not trusted (is --amqp-ca the CA that signed it, \
             and is the URL's host one it names?): {text}"
        );
    }
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        return format!(
            "TLS: the broker did not answer with TLS (is this port RabbitMQ's amqps listener?): {text}"
        );
    }
    if text.contains("received fatal alert") || text.contains("peer sent no certificates") {
        return format!("TLS: RabbitMQ refused the handshake (a client certificate it does not trust, or none): {text}");
    }
    text
}

/// Watches the live connection; when it is lost, publishes `None`, reconnects
/// with backoff, and publishes the new session.
async fn supervise<S: Session>(
    endpoint: Brokers,
    name: String,
    kind: Kind,
    prepare: Prepare<S>,
    (tx, blocked): (watch::Sender<Option<Arc<S>>>, watch::Sender<bool>),
    first: Option<(Events, usize)>,
    stop: CancellationToken,
) {
    // The broker last used (the next attempt starts after it), and the live
    // connection's events; `None` while there is no connection.
    let mut used = first.as_ref().map(|(_, used)| *used);
    let mut events = first.map(|(events, _)| events);
    loop {
        if let Some(live) = events.as_mut() {
            let Some(session) = tx.borrow().clone() else {
                return;
            };
            tokio::select! {
                reason = lost(session.connection(), live, &blocked, kind) => {
                    blocked.send_replace(false);
                    metrics::broker_blocked(kind, false);
                    metrics::broker_connected(kind, false);
                    let broker = used.map(|used| endpoint.get(used).to_string()).unwrap_or_default();
                    warn!(%broker, connection = %name, %reason, "lost the connection to RabbitMQ; reconnecting");
                    tx.send_replace(None);
                }
                () = stop.cancelled() => {
                    tx.send_replace(None);
                    metrics::broker_connected(kind, false);
                    let close = session.connection().close(200, "loggate shutting down".into());
                    let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
                    return;
                }
            }
        }

        let mut delay = BACKOFF_FIRST;
        loop {
            // Start with the next broker: the one just lost is likely down.
            let attempt = open(&endpoint, used, &name, &prepare, ATTEMPT_TIMEOUT);
            let outcome = tokio::select! {
                outcome = attempt => outcome,
                () = stop.cancelled() => return,
            };
            match outcome {
                Ok((session, new_events, now_used)) => {
                    info!(broker = %endpoint.get(now_used), connection = %name, "reconnected to RabbitMQ");
                    events = Some(new_events);
                    // A gateway that started without RabbitMQ connects here
                    // for the first time: not a reconnect.
                    if used.replace(now_used).is_some() {
                        metrics::broker_reconnected(kind);
                    }
                    tx.send_replace(Some(Arc::new(session)));
                    metrics::broker_connected(kind, true);
                    break;
                }
                Err(reason) => {
                    info!(%endpoint, %reason, "RabbitMQ still unreachable");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => return,
                    }
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Resolves when the connection is gone, with the reason.
/// Meanwhile, reports the broker blocking and unblocking the connection.
async fn lost(
    connection: &Connection,
    events: &mut Events,
    blocked: &watch::Sender<bool>,
    kind: Kind,
) -> String {
    let mut poll = tokio::time::interval(STATUS_POLL);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => return error.to_string(),
                Some(Event::ConnectionBlocked(reason)) => {
                    warn!(%reason, "RabbitMQ blocked the connection (resource alarm)");
                    blocked.send_replace(true);
                    metrics::broker_blocked(kind, true);
                }
                Some(Event::ConnectionUnblocked) => {
                    info!("RabbitMQ unblocked the connection");
                    blocked.send_replace(false);
                    metrics::broker_blocked(kind, false);
                }
                Some(_) => {}
                None => return "the connection's event stream ended".to_owned(),
            },
            _ = poll.tick() => {
                if !connection.status().connected() {
                    return "the connection is closed".to_owned();
                }
            }
        }
    }
}

/// Turns a link's session and blocked watches into one "ready?" watch.
fn watch_ready<S: Send + Sync + 'static>(
    mut sessions: watch::Receiver<Option<Arc<S>>>,
    mut blocked: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let ready = |sessions: &mut watch::Receiver<Option<Arc<S>>>,
                 blocked: &mut watch::Receiver<bool>| {
        sessions.borrow_and_update().is_some() && !*blocked.borrow_and_update()
    };
    let (tx, rx) = watch::channel(ready(&mut sessions, &mut blocked));
    tokio::spawn(async move {
        loop {
            let changed = tokio::select! {
                changed = sessions.changed() => changed,
                changed = blocked.changed() => changed,
                () = tx.closed() => return,
            };
            if changed.is_err() {
                tx.send_replace(false);
                return;
            }
            tx.send_replace(ready(&mut sessions, &mut blocked));
        }
    });
    rx
}
