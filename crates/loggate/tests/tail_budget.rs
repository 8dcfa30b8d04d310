//! Tails and the tail connection's channels: a flood of history tails gets
//! channels up to `--tail-channels` and a clear RESOURCE_EXHAUSTED beyond,
//! while tails already running and new live tails keep working.

use std::time::{Duration, Instant};

use futures::StreamExt;
use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    connections_named, consumers_of_connection, eventually, record, Gateway, WAIT,
};
use tonic::{transport::Channel, Code, Streaming};

/// The first event of a tail that is not a heartbeat.
async fn first_event(stream: &mut Streaming<pb::TailResponse>) -> Option<pb::tail_response::Event> {
    loop {
        let response = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an event arrives in time")?
            .ok()?;
        match response.event {
            Some(pb::tail_response::Event::Heartbeat(_)) => continue,
            event => return event,
        }
    }
}

/// The next record of a tail, past heartbeats.
async fn next_record_past_heartbeats(stream: &mut Streaming<pb::TailResponse>) -> pb::LogRecord {
    match first_event(stream).await {
        Some(pb::tail_response::Event::Record(record)) => record,
        other => panic!("expected a record, got {other:?}"),
    }
}

fn history_tail(contains: &str) -> pb::TailRequest {
    pb::TailRequest {
        start: Some(pb::tail_request::Start::FromBeginning(true)),
        contains: contains.into(),
        ..Default::default()
    }
}

async fn log(client: &mut LogGatewayClient<Channel>, service: &str, message: &str) {
    client
        .log(pb::LogRequest {
            record: Some(record(service, message)),
        })
        .await
        .expect("accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_history_tails_get_a_channel_or_resource_exhausted() {
    const TAILS: usize = 3000;
    const CONNECTIONS: usize = 40;
    // --tail-channels' default, 500, less the tenth kept for live tails.
    const OPEN_SHARE: usize = 450;
    const OPENING: Duration = Duration::from_secs(40);
    let started = Instant::now();
    let gateway = Gateway::start(&["--tail-heartbeat", "1s"]).await;
    let mut client = gateway.client().await;
    client
        .log_batch(pb::LogBatchRequest {
            records: (0..100)
                .map(|i| record("flood", &format!("r{i}")))
                .collect(),
        })
        .await
        .expect("accepted");

    // Running before the flood: a history tail and a live tail.
    let mut running_history = client
        .tail(pb::TailRequest {
            services: vec!["watched".into()],
            ..history_tail("")
        })
        .await
        .expect("a history tail opens")
        .into_inner();
    let mut running_live = client
        .tail(pb::TailRequest {
            services: vec!["watched".into()],
            ..Default::default()
        })
        .await
        .expect("a live tail opens")
        .into_inner();

    // The flood: history tails whose filter never matches, from many clients.
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(LogGatewayClient::new(gateway.channel().await));
    }
    let opening: Vec<_> = (0..TAILS)
        .map(|i| {
            let mut client = clients[i % CONNECTIONS].clone();
            tokio::spawn(async move {
                // Hundreds of stream consumers starting at once keep a
                // small broker busy for a while: slow, but not a failure.
                let opened =
                    tokio::time::timeout(OPENING, client.tail(history_tail("never-matches-zq")))
                        .await;
                match opened {
                    Err(_) => Err(Err("no answer in time".to_owned())),
                    Ok(Ok(response)) => {
                        let mut stream = response.into_inner();
                        match first_event(&mut stream).await {
                            Some(pb::tail_response::Event::CaughtUp(_)) => Ok(stream),
                            other => Err(Err(format!("an admitted tail got {other:?}"))),
                        }
                    }
                    Ok(Err(status)) => Err(Ok(status)),
                }
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0usize;
    let mut other = Vec::new();
    for task in opening {
        match task.await.expect("the opening task does not panic") {
            Ok(stream) => admitted.push(stream),
            Err(Ok(status))
                if status.code() == Code::ResourceExhausted
                    && status.message().contains("--tail-channels") =>
            {
                refused += 1
            }
            Err(Ok(status)) => other.push(format!("{:?}: {}", status.code(), status.message())),
            Err(Err(problem)) => other.push(problem),
        }
    }
    let opened_in = started.elapsed();
    other.sort();
    other.dedup();
    assert!(
        other.is_empty(),
        "{} admitted, {refused} refused RESOURCE_EXHAUSTED, and other outcomes: {other:?}",
        admitted.len()
    );
    assert!(refused > 0, "{} tails, all admitted", admitted.len());
    // The tail opened before the flood holds one channel.
    assert_eq!(admitted.len() + 1, OPEN_SHARE, "{refused} refused");

    // While the flood is open: a new live tail from another client works,
    // and so do the tails that were running before it.
    let mut late = gateway.client().await;
    let mut new_live = late
        .tail(pb::TailRequest {
            services: vec!["watched".into()],
            ..Default::default()
        })
        .await
        .expect("a new live tail opens during the flood")
        .into_inner();
    log(&mut late, "watched", "during the flood").await;
    assert_eq!(
        next_record_past_heartbeats(&mut new_live).await.message,
        "during the flood"
    );
    assert_eq!(
        next_record_past_heartbeats(&mut running_live).await.message,
        "during the flood"
    );
    assert_eq!(
        first_event(&mut running_history).await,
        Some(pb::tail_response::Event::CaughtUp(pb::CaughtUp {}))
    );
    assert_eq!(
        next_record_past_heartbeats(&mut running_history)
            .await
            .message,
        "during the flood"
    );
    // The admitted flood tails are still alive: they heartbeat.
    for stream in admitted.iter_mut().take(20) {
        let beat = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a heartbeat in time")
            .expect("open")
            .expect("no error");
        assert!(
            matches!(beat.event, Some(pb::tail_response::Event::Heartbeat(_))),
            "{beat:?}"
        );
    }

    // Leaving frees the channels.
    let count = admitted.len();
    drop(admitted);
    drop(running_history);
    let tail_connection = format!("{} tail", gateway.instance);
    eventually("the flood's consumers are gone", || {
        consumers_of_connection(&tail_connection) <= 2
    })
    .await;
    let channels: u64 = connections_named(&tail_connection)
        .iter()
        .map(|(_, _, channels)| channels)
        .sum();
    assert!(channels <= 3, "{channels} channels left open");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?} ({count} admitted, {refused} refused, opened in {opened_in:?})",
        started.elapsed()
    );
    eprintln!(
        "{count} admitted, {refused} refused RESOURCE_EXHAUSTED; opened in {opened_in:?}, all in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_history_tail_that_matches_nothing_still_gets_heartbeats() {
    let gateway = Gateway::start(&["--tail-heartbeat", "200ms"]).await;
    let mut client = gateway.client().await;
    client
        .log_batch(pb::LogBatchRequest {
            records: (0..100)
                .map(|i| record("quiet", &format!("r{i}")))
                .collect(),
        })
        .await
        .expect("accepted");
    let mut stream = client
        .tail(history_tail("never-matches-zq"))
        .await
        .expect("tail opens")
        .into_inner();
    let mut beats = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while beats < 3 {
        let response = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {beats} heartbeats within 3s"))
            .expect("open")
            .expect("no error");
        match response.event {
            Some(pb::tail_response::Event::Heartbeat(beat)) => {
                assert!(beat.head_time.is_some(), "{beat:?}");
                beats += 1;
            }
            Some(pb::tail_response::Event::CaughtUp(_)) => {}
            other => panic!("nothing matches, yet got {other:?}"),
        }
    }
}
