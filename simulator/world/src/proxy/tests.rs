//! The proxy's modes against an echo server: bytes pass, latency delays, a blackhole hangs, a
//! cut resets.

#![allow(clippy::unwrap_used)]

use super::*;

/// An echo server on a free port.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `ping` and waits up to `within` for it to come back.
async fn round_trip(s: &mut TcpStream, within: Duration) -> std::io::Result<Vec<u8>> {
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
        Ok(r) => r.map(|_| buf.to_vec()),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[tokio::test]
async fn passes_bytes_both_ways() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut s, Duration::from_secs(2)).await.unwrap(),
        b"ping"
    );
}

#[tokio::test]
async fn latency_delays_each_way() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set(Mode::Latency {
        min_ms: 100,
        max_ms: 120,
    });
    let started = std::time::Instant::now();
    round_trip(&mut s, Duration::from_secs(2)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    proxy.set(Mode::Pass);
    let started = std::time::Instant::now();
    round_trip(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
}

/// A blackhole hangs open and new connections alike (no error, no answer); once healed,
/// what was held goes through on the same connections.
#[tokio::test]
async fn a_blackhole_hangs_connections_and_heals() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, Duration::from_secs(2)).await.unwrap();
    proxy.set(Mode::Blackhole);
    let err = round_trip(&mut open, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    let err = round_trip(&mut new, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    proxy.set(Mode::Pass);
    // The held pings arrive now; each stream gets its echo back.
    let mut buf = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(2), open.read_exact(&mut buf[..4]))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), new.read_exact(&mut buf[4..]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"pingping");
}

/// A cut resets what is open and what comes; healed, new connections work again.
#[tokio::test]
async fn a_cut_resets_connections_until_healed() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, Duration::from_secs(2)).await.unwrap();
    proxy.set(Mode::Cut);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(round_trip(&mut open, Duration::from_secs(2)).await.is_err());
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut new, Duration::from_secs(2)).await.is_err());
    proxy.set(Mode::Pass);
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut again, Duration::from_secs(2))
            .await
            .unwrap(),
        b"ping"
    );
}
