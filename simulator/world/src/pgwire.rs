//! Just enough of PostgreSQL's wire protocol (v3) for the database proxy to see where a booking
//! write's transaction ends, so it can let the commit through and lose its answer
//! (`Mode::CommitLost`), or lose the commit on its way: the client's messages say which
//! statements write `bookings` and where their transaction is sent to end, the server's
//! `ReadyForQuery` says when it has ended (status `I`).
//!
//! Both parsers take the byte stream in whatever chunks TCP gives and never change it; a stream
//! that turns to TLS is left alone (the world's servers run without it).

use std::collections::HashSet;

/// `SSLRequest` and `GSSENCRequest` codes: an untyped message another untyped one follows.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Whether SQL text writes the bookings table (an insert, or an update of a booking).
fn writes_bookings(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql).to_ascii_lowercase();
    text.contains("insert into bookings") || text.contains("update bookings")
}

/// Splits framed messages off a buffer; `typed` false for the untyped start-up messages.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// The next whole message (type byte, body), if the buffer holds one.
    fn next(&mut self, typed: bool) -> Option<(u8, Vec<u8>)> {
        let head = usize::from(typed);
        if self.buf.len() < head + 4 {
            return None;
        }
        let len_bytes: [u8; 4] = self.buf[head..head + 4].try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let total = head + len.max(4);
        if self.buf.len() < total {
            return None;
        }
        let kind = if typed { self.buf[0] } else { 0 };
        let body = self.buf[head + 4..total].to_vec();
        self.buf.drain(..total);
        Some((kind, body))
    }
}

/// The first NUL-terminated string of `body` from `at`, and where the next one starts.
fn cstr(body: &[u8], at: usize) -> (&[u8], usize) {
    let rest = body.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    (&rest[..end], at + end + 1)
}

/// What the client has said: which prepared statements write bookings, and whether the current
/// transaction (or autocommit statement) ran one.
#[derive(Debug, Default)]
pub struct ClientSide {
    framer: Framer,
    started: bool,
    tls: bool,
    writers: HashSet<Vec<u8>>,
    /// A statement that writes bookings was bound or sent since the last end seen.
    wrote: bool,
}

/// What one chunk from the client held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// It runs a statement that writes bookings.
    pub writes: bool,
    /// It ends a transaction that wrote bookings: a `COMMIT`, or the `Sync` after an autocommit
    /// write (`in_transaction` false).
    pub ends_write: bool,
}

impl ClientSide {
    /// Reads a chunk the client sent; `in_transaction` is whether the server last said the
    /// session is inside a transaction.
    pub fn feed(&mut self, chunk: &[u8], in_transaction: bool) -> Sent {
        let mut sent = Sent::default();
        if self.tls {
            return sent;
        }
        self.framer.buf.extend_from_slice(chunk);
        loop {
            if !self.started {
                let Some((_, body)) = self.framer.next(false) else {
                    return sent;
                };
                let code = body
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes);
                match code {
                    SSL_REQUEST | GSSENC_REQUEST => {}
                    _ => self.started = true,
                }
                continue;
            }
            let Some((kind, body)) = self.framer.next(true) else {
                return sent;
            };
            match kind {
                b'Q' => {
                    let sql = cstr(&body, 0).0;
                    if writes_bookings(sql) {
                        self.wrote = true;
                        sent.writes = true;
                    } else if self.wrote && sql.trim_ascii_start().starts_with(b"COMMIT") {
                        sent.ends_write = true;
                        self.wrote = false;
                    }
                }
                b'P' => {
                    let (name, next) = cstr(&body, 0);
                    let name = name.to_vec();
                    if writes_bookings(cstr(&body, next).0) {
                        self.writers.insert(name);
                    } else {
                        self.writers.remove(&name);
                    }
                }
                b'B' => {
                    let (_, next) = cstr(&body, 0);
                    if self.writers.contains(cstr(&body, next).0) {
                        self.wrote = true;
                        sent.writes = true;
                    }
                }
                b'S' if self.wrote && !in_transaction => {
                    sent.ends_write = true;
                    self.wrote = false;
                }
                _ => {}
            }
        }
    }

    /// The server agreed to TLS: nothing more can be read.
    pub fn stop_reading(&mut self) {
        self.tls = true;
        self.framer.buf.clear();
    }
}

/// What the server has said: where transactions end.
#[derive(Debug, Default)]
pub struct ServerSide {
    framer: Framer,
    first: bool,
    tls: bool,
}

/// What one chunk from the server held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// A `ReadyForQuery` with status idle: a transaction (or autocommit statement) ended.
    pub ended: bool,
    /// The last `ReadyForQuery`'s status was "in a transaction" (`T` or `E`).
    pub in_transaction: Option<bool>,
    /// The server agreed to TLS (its one-byte `S` answer to `SSLRequest`).
    pub tls: bool,
}

impl ServerSide {
    /// Reads a chunk the server sent.
    pub fn feed(&mut self, chunk: &[u8]) -> Seen {
        let mut seen = Seen::default();
        if self.tls {
            return seen;
        }
        let mut chunk = chunk;
        if !self.first && !chunk.is_empty() {
            self.first = true;
            // The answer to SSLRequest is one byte, not a message ('N' is also NoticeResponse,
            // but a server never opens a session with a notice).
            match chunk[0] {
                b'S' => {
                    self.tls = true;
                    seen.tls = true;
                    return seen;
                }
                b'N' => chunk = &chunk[1..],
                _ => {}
            }
        }
        self.framer.buf.extend_from_slice(chunk);
        while let Some((kind, body)) = self.framer.next(true) {
            if kind == b'Z' {
                let idle = body.first() == Some(&b'I');
                seen.ended |= idle;
                seen.in_transaction = Some(!idle);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn untyped(code: u32) -> Vec<u8> {
        let mut m = 8u32.to_be_bytes().to_vec();
        m.extend_from_slice(&code.to_be_bytes());
        m
    }

    #[test]
    fn a_prepared_booking_insert_is_seen_when_bound_even_byte_by_byte() {
        let mut client = ClientSide::default();
        let mut stream = untyped(SSL_REQUEST);
        stream.extend(untyped(196_608));
        stream.extend(message(
            b'P',
            b"s1\0WITH b AS (INSERT INTO bookings (id) VALUES (1))\0\0\0",
        ));
        stream.extend(message(b'P', b"s2\0SELECT 1\0\0\0"));
        stream.extend(message(b'B', b"\0s2\0\0\0\0\0\0\0"));
        let mut wrote = false;
        for byte in &stream {
            wrote |= client.feed(std::slice::from_ref(byte), false).writes;
        }
        assert!(!wrote, "parsing and binding a read writes nothing");
        assert!(
            client
                .feed(&message(b'B', b"\0s1\0\0\0\0\0\0\0"), false)
                .writes
        );
        let sync = client.feed(&message(b'S', b""), false);
        assert!(sync.ends_write, "an autocommit write ends at its Sync");
        assert!(
            client
                .feed(&message(b'Q', b"UPDATE bookings SET x = 1\0"), true)
                .writes
        );
        assert!(
            !client.feed(&message(b'S', b""), true).ends_write,
            "inside a transaction"
        );
        let commit = client.feed(&message(b'Q', b"COMMIT\0"), true);
        assert!(commit.ends_write && !commit.writes);
        assert!(!client.feed(&message(b'Q', b"COMMIT\0"), false).ends_write);
    }

    #[test]
    fn the_end_of_a_transaction_is_seen_after_the_ssl_refusal() {
        let mut server = ServerSide::default();
        let mut stream = vec![b'N'];
        stream.extend(message(b'R', &0u32.to_be_bytes()));
        stream.extend(message(b'Z', b"T"));
        assert!(!server.feed(&stream).ended);
        let end = message(b'Z', b"I");
        assert!(!server.feed(&end[..3]).ended);
        assert!(server.feed(&end[3..]).ended);
    }

    #[test]
    fn tls_is_left_alone() {
        let mut server = ServerSide::default();
        assert!(server.feed(b"S").tls);
        assert!(!server.feed(&message(b'Z', b"I")).ended);
    }
}
