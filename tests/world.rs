//! The throwaway world: servers start, die, come back, and vanish; tests get their own databases.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt as _;
use integration_tests::{eventually, shared_world};
use sqlx::{Connection as _, PgConnection};
use world::process::is_alive;
use world::World;

async fn select_one(url: &str) -> Option<i32> {
    let mut conn = tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(url))
        .await
        .ok()?
        .ok()?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .ok()?;
    let _ = conn.close().await;
    Some(one)
}

/// Publishes to a fresh subscription and waits for the message; `None` if that fails within 2 s
/// (a disconnected client buffers and waits, so every step is bounded).
async fn nats_round_trip(client: &async_nats::Client, subject: &str) -> Option<()> {
    let attempt = async {
        let mut sub = client.subscribe(subject.to_owned()).await.ok()?;
        client.flush().await.ok()?;
        client
            .publish(subject.to_owned(), "ping".into())
            .await
            .ok()?;
        let msg = sub.next().await?;
        (msg.payload.as_ref() == b"ping").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()?
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_nats_are_killed_and_restarted_and_serve_again() {
    let world = World::builder()
        .fsync(false)
        .local_only()
        .pg_setting("work_mem", "7MB")
        .start()
        .await
        .unwrap();
    let pg = world.postgres_url().unwrap().to_owned();
    assert_eq!(select_one(&pg).await, Some(1));
    let port = world.postgres_port().await.unwrap();
    assert_ne!(port, 5432, "never the standard port");

    world.kill_postgres().await.unwrap();
    assert_eq!(
        select_one(&pg).await,
        None,
        "a killed server must not answer"
    );
    world.start_postgres().await.unwrap();
    assert_eq!(select_one(&pg).await, Some(1));
    assert_eq!(
        world.postgres_port().await,
        Some(port),
        "restarts keep the port"
    );
    world.restart_postgres().await.unwrap();
    assert_eq!(select_one(&pg).await, Some(1));
    let mut conn = PgConnection::connect(&pg).await.unwrap();
    let work_mem: String = sqlx::query_scalar("SHOW work_mem")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        work_mem, "7MB",
        "the builder's settings hold across restarts"
    );

    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(world.nats_url())
        .await
        .unwrap();
    assert!(world.nats_url().starts_with("nats://127.0.0.1:"));
    assert_eq!(nats_round_trip(&client, "world.ping").await, Some(()));
    // JetStream is on.
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "WORLD".into(),
        subjects: vec!["world.js.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    world.kill_nats().await.unwrap();
    assert_eq!(
        nats_round_trip(&client, "world.ping2").await,
        None,
        "a killed server must not deliver"
    );
    world.start_nats().await.unwrap();
    eventually(
        "NATS to serve the reconnected client",
        Duration::from_secs(20),
        || nats_round_trip(&client, "world.ping3"),
    )
    .await;
    // The JetStream store survives the restart.
    eventually(
        "the stream to survive the restart",
        Duration::from_secs(10),
        || async { js.get_stream("WORLD").await.ok().map(|_| ()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_world_stops_its_servers_and_deletes_its_files_even_after_a_panic() {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let world = World::builder()
                .fsync(false)
                .local_only()
                .start()
                .await
                .unwrap();
            tx.send((world.pids().await, world.dir().to_path_buf()))
                .unwrap();
            panic!("a test failing while it holds a world");
        });
    });
    assert!(handle.join().is_err(), "the thread panicked");
    let (pids, dir) = rx.recv().unwrap();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        eventually(
            "the server to exit",
            Duration::from_secs(10),
            || async move { (!is_alive(pid)).then_some(()) },
        )
        .await;
    }
    assert!(!dir.exists(), "{} should be gone", dir.display());
}

/// Writes `marker` into a database of its own, waits at `together` for the other writers, then
/// reads back only its own row.
async fn write_marker(
    world: &World,
    marker: &str,
    together: &tokio::sync::Barrier,
) -> (String, String) {
    let db = world.database().await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("CREATE TABLE marker (owner text)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO marker VALUES ($1)")
        .bind(marker)
        .execute(&mut conn)
        .await
        .unwrap();
    together.wait().await;
    let rows: Vec<String> = sqlx::query_scalar("SELECT owner FROM marker")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![marker.to_owned()],
        "another test's rows leaked in"
    );
    (db.name().to_owned(), db.url().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn tests_running_at_once_get_separate_databases() {
    let world = shared_world().await;
    let together = tokio::sync::Barrier::new(2);
    let (a, b) = tokio::join!(
        write_marker(world, "a", &together),
        write_marker(world, "b", &together)
    );
    assert_ne!(a.0, b.0);
    assert_ne!(a.1, b.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_test_running_at_the_same_time_gets_its_own_database() {
    write_marker(shared_world().await, "c", &tokio::sync::Barrier::new(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn databases_cloned_from_a_template_start_with_its_schema_and_nothing_else() {
    let world = shared_world().await;
    let setup = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await?;
        sqlx::query("CREATE TABLE migrated (id int)")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    };
    let dbs =
        futures::future::join_all((0..4).map(|_| world.database_from("world_template", setup)))
            .await;
    for db in dbs {
        let db = db.unwrap();
        let mut conn = PgConnection::connect(db.url()).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM migrated")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(count, 0);
        sqlx::query("INSERT INTO migrated VALUES (1)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_verbs_refuse_servers_given_by_url() {
    // A world without local servers cannot kill what it does not own.
    let world = World::builder()
        .without_postgres()
        .without_nats()
        .start()
        .await
        .unwrap();
    assert!(world.kill_postgres().await.is_err());
    assert!(world.restart_nats().await.is_err());
}

/// A cluster of three routed nodes with clustered JetStream: a stream kept on all three takes
/// writes, and clients given every seed URL keep talking through the loss of a node.
#[tokio::test(flavor = "multi_thread")]
async fn a_nats_cluster_serves_on_when_a_node_dies() {
    use async_nats::jetstream::{self, stream};
    let world = World::builder()
        .without_postgres()
        .nats_cluster(3)
        .start()
        .await
        .unwrap();
    assert_eq!(world.nats_nodes().await, 3);
    assert_eq!(world.nats_url().split(',').count(), 3);
    let client = world.nats_connect(world::NatsRole::Harness).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "CLUSTERED".into(),
        subjects: vec!["clustered.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("clustered.a", "1".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let other = world.nats_connect(world::NatsRole::Harness).await.unwrap();
    for node in 0..3 {
        world.kill_nats_node(node).await.unwrap();
        // Both clients, whichever node they were on, still reach each other.
        eventually(
            &format!("a round trip with node {node} down"),
            Duration::from_secs(30),
            || async {
                nats_round_trip(&client, "cluster.ping").await?;
                nats_round_trip(&other, "cluster.pong").await
            },
        )
        .await;
        eventually(
            &format!("a write to the 3-replica stream with node {node} down"),
            Duration::from_secs(30),
            || async {
                let ack = js.publish("clustered.b", "2".into()).await.ok()?;
                ack.await.ok().map(|_| ())
            },
        )
        .await;
        world.start_nats_node(node).await.unwrap();
        // A rolling restart waits for the node to rejoin: killing the next one while this one
        // still catches up would leave the stream without a quorum.
        eventually(
            &format!("node {node} back among the stream's current replicas"),
            Duration::from_secs(30),
            || async {
                let info = js
                    .get_stream("CLUSTERED")
                    .await
                    .ok()?
                    .info()
                    .await
                    .ok()?
                    .clone();
                let cluster = info.cluster?;
                let current = cluster
                    .replicas
                    .iter()
                    .filter(|p| p.current && !p.offline)
                    .count();
                (cluster.leader.is_some() && current == 2).then_some(())
            },
        )
        .await;
    }
}
