//! The NATS side: subscribe every handler subject in the queue group, decode the NestJS envelope,
//! run handlers concurrently (bounded), and answer exactly as the NestJS server would.
//!
//! Unlike NestJS, a malformed body never takes the process down: it is logged, counted and, when
//! the sender waits for a reply, answered with `BUS_001`.

use std::sync::Arc;

use contracts::subjects::BOOKING_HANDLERS;
use contracts::InboundKind;
use futures::StreamExt as _;
use tokio::sync::{watch, Semaphore};

use crate::app::App;
use crate::error::ServiceError;
use crate::handlers;
use crate::replies::{self, Share};
use crate::ticket::Ticket;

/// Serves until `shutdown` turns true, then drains: no new messages, but every message already
/// queued for this replica is handled and answered, and in-flight ones finish. Once `give_up`
/// turns true (the shutdown grace ran out) it returns at once, dropping whatever is unanswered.
pub(crate) async fn serve(
    app: Arc<App>,
    workers: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
    mut give_up: watch::Receiver<bool>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut subscriptions = Vec::new();
    for subject in BOOKING_HANDLERS {
        subscriptions.push(
            app.nats
                .queue_subscribe(subject, app.config.queue_group.clone())
                .await
                .map_err(|e| anyhow::anyhow!("subscribing {subject}: {e}"))?,
        );
    }
    barrier(&app.nats).await?;
    let _ = ready.send(());
    tracing::info!(
        queue_group = %app.config.queue_group,
        subjects = BOOKING_HANDLERS.len(),
        "booking-service is listening"
    );
    let mut tasks = tokio::task::JoinSet::new();
    // Every wait below (a drain, a handler, the last barrier) may hang while NATS or PostgreSQL
    // is gone; the grace bounds them all.
    let gave_up = tokio::select! {
        () = answer(&app, &workers, shutdown, subscriptions, &mut tasks) => false,
        _ = give_up.wait_for(|&g| g) => true,
    };
    if gave_up {
        // Dropping the set aborts the handlers.
        tracing::warn!(
            unanswered = tasks.len(),
            "shutdown grace ran out before the NATS subscriptions drained; unanswered requests are dropped"
        );
    } else {
        tracing::info!("booking-service stopped taking requests");
    }
    Ok(())
}

/// Takes messages and answers them on `workers` until `shutdown`, then drains the subscriptions
/// and returns once every message taken is answered and NATS has the replies.
async fn answer(
    app: &Arc<App>,
    workers: &tokio::runtime::Handle,
    mut shutdown: watch::Receiver<bool>,
    subscriptions: Vec<async_nats::Subscriber>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let mut messages = futures::stream::select_all(subscriptions);
    let limit = app.config.max_in_flight;
    let permits = Arc::new(Semaphore::new(limit));
    // Bodies waiting for a handler, in KiB: the queue is bounded by bytes, not by count.
    let budget_kib = u32::try_from(app.config.max_queued_bytes / 1024).unwrap_or(u32::MAX);
    let queued = Arc::new(Semaphore::new(budget_kib as usize));
    let mut draining = false;
    loop {
        // Messages are taken from the client's buffers as soon as they arrive (never waiting for
        // a handler), so those buffers stay small; the wait happens below, bounded by bytes.
        let message = tokio::select! {
            message = messages.next() => message,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = shutdown.changed(), if !draining => {
                drain(&mut messages).await;
                draining = true;
                continue;
            }
        };
        // After a drain the stream ends once every message NATS had already handed us is read.
        let Some(message) = message else { break };
        if message.payload.len() > app.codec.max_len() {
            // Refused before it is queued, and the body dropped before the answer goes out.
            let error = contracts::CodecError::TooLarge {
                len: message.payload.len(),
                max: app.codec.max_len(),
            };
            answer_unreadable(app, &message.subject, message.reply, error).await;
            continue;
        }
        let kib = u32::try_from(message.payload.len() / 1024 + 1).unwrap_or(u32::MAX);
        let Ok(ticket) = queued.clone().try_acquire_many_owned(kib) else {
            app.metrics.requests_shed.inc();
            tracing::warn!(
                subject = %message.subject,
                "request shed: MAX_QUEUED_MIB of requests are already waiting"
            );
            refuse(app, message, ServiceError::Overloaded).await;
            continue;
        };
        // The client hands out payloads as slices of its read buffer, so a small body kept
        // waiting would pin the whole buffer it was read into (megabytes, once large bodies
        // passed through): a copy makes the bytes counted above the bytes held.
        let message = async_nats::Message {
            payload: bytes::Bytes::copy_from_slice(&message.payload),
            ..message
        };
        let app = app.clone();
        let permits = permits.clone();
        let taken = std::time::Instant::now();
        tasks.spawn_on(
            async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                // Boxed once it may run: a waiting task holds a pointer, not the handler's whole
                // state (kilobytes), so a rush of thousands waiting costs little memory.
                Box::pin(handle(&app, message, taken)).await;
                // The body's bytes count until it is answered: waiting or in flight.
                drop(ticket);
            },
            workers,
        );
    }
    // Every message taken is answered before the process goes on to stop.
    while tasks.join_next().await.is_some() {}
    // A publish only queues the reply in the client; closing the connection right after can lose
    // the last ones. The round trip proves NATS has every reply before the caller goes on to close.
    if let Err(e) = barrier(&app.nats).await {
        tracing::warn!(error = %e, "could not confirm that NATS received the last replies");
    }
}

/// Answers a request with `error` without running its handler.
async fn refuse(app: &App, message: async_nats::Message, error: ServiceError) {
    let Some(reply) = message.reply else { return };
    // An unreadable body has no id to echo: it gets the bare error, as in `answer_unreadable`.
    let kind = app
        .codec
        .decode_inbound(&message.payload)
        .map_or(InboundKind::External, |inbound| inbound.kind);
    if let Some(Ok(body)) = encode_answer(app, &kind, &Err(error)) {
        let _ = app.nats.publish(reply, body.into()).await;
    }
}

/// The reply to a request of `kind` with `result`, as the NestJS server would write it; `None` for
/// an event, which is never answered.
fn encode_answer(
    app: &App,
    kind: &InboundKind,
    result: &Result<serde_json::Value, ServiceError>,
) -> Option<Result<Vec<u8>, contracts::CodecError>> {
    Some(match (kind, result) {
        (InboundKind::Event, _) => return None,
        (InboundKind::Request(id), Ok(value)) => app.codec.encode_response(id, value),
        (InboundKind::Request(id), Err(e)) => app.codec.encode_error(id, &e.to_error_value()),
        (InboundKind::External, Ok(value)) => app.codec.encode_bare(value),
        (InboundKind::External, Err(e)) => app.codec.encode_bare(&e.to_error_value()),
    })
}

/// A body that could not be read (malformed or too large): logged, counted and, when the sender
/// waits for a reply, answered with a bare `BUS_001`. Without a readable id the NestJS client
/// cannot match any reply; a bare error still tells a plain NATS requester what went wrong.
async fn answer_unreadable(
    app: &App,
    subject: &str,
    reply: Option<async_nats::Subject>,
    error: contracts::CodecError,
) {
    app.metrics.malformed_messages.inc();
    tracing::warn!(subject, error = %error, "malformed message");
    let Some(reply) = reply else { return };
    if let Ok(body) = app
        .codec
        .encode_bare(&ServiceError::from(error).to_error_value())
    {
        let _ = app.nats.publish(reply, body.into()).await;
    }
}

/// Stops new messages (NATS gives them to other replicas) while keeping the ones already queued for
/// this subscriber: each subscription ends after its last queued message.
async fn drain(messages: &mut futures::stream::SelectAll<async_nats::Subscriber>) {
    for sub in messages.iter_mut() {
        if let Err(e) = sub.drain().await {
            tracing::warn!(error = %e, "could not drain a subscription");
        }
    }
    tracing::info!("draining: answering the requests already queued, taking no new ones");
}

/// Returns once the server has processed everything this connection sent so far (a flush only
/// empties our socket buffer): a message to our own inbox comes back after our subscriptions.
async fn barrier(nats: &async_nats::Client) -> anyhow::Result<()> {
    let inbox = nats.new_inbox();
    let mut echo = nats.subscribe(inbox.clone()).await?;
    nats.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(std::time::Duration::from_secs(10), echo.next())
        .await
        .map_err(|_| anyhow::anyhow!("NATS did not confirm the subscriptions within 10 s"))?;
    Ok(())
}

/// Handles one message taken from NATS at `taken`.
async fn handle(app: &App, message: async_nats::Message, taken: std::time::Instant) {
    let async_nats::Message {
        subject,
        reply,
        payload,
        ..
    } = message;
    let subject = subject.as_str();
    let inbound = match app.codec.decode_inbound(&payload) {
        Ok(inbound) => inbound,
        Err(e) => return answer_unreadable(app, subject, reply, e).await,
    };
    // The body is decoded: a request waiting for its turn holds only what it carries.
    drop(payload);
    let deadline = app.config.request_deadline;
    let room = reply_room(app, &inbound.kind, reply.is_some());
    let ticket = Arc::new(Ticket::default());
    // The wait for the reply budget counts toward the deadline: a caller is answered in time
    // whether its turn came or not.
    let work = Ticket::scope(
        ticket.clone(),
        handlers::dispatch(app, subject, inbound.data, room),
    );
    let dispatched = tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            app.metrics.requests_past_deadline.inc();
            // Only a request whose write had not started may be told "not applied"; giving up
            // the ticket also keeps its queued create from being written later.
            let error = if ticket.abandon() {
                ServiceError::Deadline(deadline)
            } else {
                ServiceError::OutcomeUnknown {
                    step: "the request's write",
                    why: format!("no answer from the database within {deadline:?}"),
                }
            };
            Some((Err(error), Share::default()))
        });
    let Some((result, mut share)) = dispatched else {
        if let (InboundKind::Request(id), Some(reply)) = (&inbound.kind, reply) {
            if let Ok(body) = app.codec.encode_no_handler(id) {
                let _ = app.nats.publish(reply, body.into()).await;
            }
        }
        return;
    };
    if let Err(e) = &result {
        match e {
            ServiceError::Database { .. }
            | ServiceError::Deadline(_)
            | ServiceError::AppliedUnread { .. }
            | ServiceError::Internal(_) => {
                tracing::error!(subject, error = %e, "request failed")
            }
            ServiceError::OutcomeUnknown { .. } => {
                app.metrics.outcomes_unknown.inc();
                tracing::error!(subject, error = %e, "request failed")
            }
            _ => tracing::info!(subject, code = %e.code(), error = %e, "request refused"),
        }
    }
    let Some(reply) = reply else { return };
    let Some(body) = encode_answer(app, &inbound.kind, &result) else {
        return;
    };
    drop(result);
    let max = max_reply(app);
    let body = match (body, &inbound.kind) {
        (Ok(body), InboundKind::Request(id)) if body.len() > max => {
            app.metrics.replies_too_large.inc();
            tracing::warn!(
                subject,
                bytes = body.len(),
                max_payload = max,
                "reply too large for NATS: answered with an error instead"
            );
            let error = ServiceError::ReplyTooLarge {
                bytes: body.len(),
                max,
            };
            app.codec.encode_error(id, &error.to_error_value())
        }
        (body, _) => body,
    };
    match body {
        Ok(body) => {
            // From here the share covers the encoded bytes alone, until NATS has them.
            app.replies.resize(&mut share, body.len()).await;
            let flush = body.len() >= replies::FLUSH_FROM;
            if let Err(e) = app.nats.publish(reply, body.into()).await {
                tracing::warn!(subject, error = %e, "could not send the reply");
            } else if flush {
                if let Err(e) = app.nats.flush().await {
                    tracing::warn!(subject, error = %e, "could not flush the reply");
                }
            }
            drop(share);
            if subject == contracts::subjects::BOOKING_CREATE {
                app.metrics
                    .create_seconds
                    .observe(taken.elapsed().as_secs_f64());
            }
        }
        Err(e) => tracing::error!(subject, error = %e, "could not encode the reply"),
    }
}

/// The largest reply the server accepts on this connection (its `max_payload`, less room for the
/// protocol line).
fn max_reply(app: &App) -> usize {
    app.nats.server_info().max_payload.saturating_sub(512)
}

/// How many bytes a handler's value may take in the reply to a message of `kind`: the largest
/// reply less the envelope around the value (which echoes the caller's id); unbounded when no
/// reply is sent.
fn reply_room(app: &App, kind: &InboundKind, answered: bool) -> usize {
    let envelope = match kind {
        _ if !answered => return usize::MAX,
        InboundKind::Event => return usize::MAX,
        InboundKind::External => 0,
        InboundKind::Request(id) => match app.codec.encode_response(id, &serde_json::Value::Null) {
            Ok(empty) => empty.len().saturating_sub("null".len()),
            Err(_) => return 0,
        },
    };
    max_reply(app).saturating_sub(envelope)
}
