//! The independent AMQP consumer that checks what really reached RabbitMQ,
//! without going through the gateway.

use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties,
};

use crate::{AMQP_URL, WAIT};

/// An independent AMQP consumer: a private, auto-deleted queue bound to the
/// gateway's exchange, to see exactly what RabbitMQ routed.
pub struct Probe {
    consumer: lapin::Consumer,
    /// Kept open for as long as the probe consumes.
    _connection: Connection,
}

impl Probe {
    /// Binds a fresh exclusive queue to `exchange` with `binding` (e.g. `#`, `*.error`).
    pub async fn bind(exchange: &str, binding: &str) -> Probe {
        Probe::bind_at(AMQP_URL, exchange, binding).await
    }

    /// The same, on the broker (vhost) at `amqp_url`.
    pub async fn bind_at(amqp_url: &str, exchange: &str, binding: &str) -> Probe {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .expect("probe connects");
        let channel = connection.create_channel().await.expect("channel");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare probe queue");
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind probe queue");
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        Probe {
            consumer,
            _connection: connection,
        }
    }

    /// The next message routed to the probe.
    pub async fn next(&mut self) -> Delivery {
        tokio::time::timeout(WAIT, self.consumer.next())
            .await
            .expect("a message arrives in time")
            .expect("consumer open")
            .expect("delivery")
    }

    /// The next message's JSON body.
    pub async fn next_json(&mut self) -> serde_json::Value {
        let delivery = self.next().await;
        serde_json::from_slice(&delivery.data).expect("JSON body")
    }
}

/// Publishes `body` straight to `exchange`, as any AMQP client could, and
/// waits for RabbitMQ to take it.
pub async fn publish_raw(exchange: &str, routing_key: &str, content_type: &str, body: &[u8]) {
    let connection = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirm mode");
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_content_type(content_type.into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = connection.close(200, "done".into()).await;
}
