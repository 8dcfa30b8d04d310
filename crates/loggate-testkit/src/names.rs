//! Names on the shared broker: unique ones, so that tests (and earlier runs)
//! never meet, and the guard that deletes what a test declared.

use std::sync::atomic::{AtomicU32, Ordering};

use lapin::{
    options::{ExchangeDeleteOptions, QueueDeleteOptions},
    Connection, ConnectionProperties,
};

use crate::AMQP_URL;

/// A name no other test (or earlier run) uses: `loggate-test.<what>.…`.
pub fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("loggate-test.{what}.{}.{n}.{nanos:x}", std::process::id())
}

/// A fresh exchange and history queue name, and the guard that deletes them.
pub fn fresh_names() -> (String, String, Names) {
    let (exchange, history) = (unique("x"), unique("history"));
    let names = Names {
        exchanges: vec![exchange.clone()],
        queues: vec![history.clone()],
    };
    (exchange, history, names)
}

/// Exchanges and queues (in the default vhost) to delete when the test ends,
/// pass or fail.
#[derive(Default)]
pub struct Names {
    /// Exchanges to delete.
    pub exchanges: Vec<String>,
    /// Queues (and streams) to delete.
    pub queues: Vec<String>,
}

impl Drop for Names {
    fn drop(&mut self) {
        let exchanges = std::mem::take(&mut self.exchanges);
        let queues = std::mem::take(&mut self.queues);
        // Drop may run inside a runtime (or while panicking): clean up on a
        // thread of our own with its own small runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let Ok(connection) =
                    Connection::connect(AMQP_URL, ConnectionProperties::default()).await
                else {
                    return;
                };
                let Ok(channel) = connection.create_channel().await else {
                    return;
                };
                for queue in queues {
                    let _ = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in exchanges {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "test cleanup".into()).await;
            });
        });
        let _ = cleanup.join();
    }
}
