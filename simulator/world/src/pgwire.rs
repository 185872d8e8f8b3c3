//! Just enough of PostgreSQL's wire protocol (v3) for the database proxy to see where a booking
//! write's transaction ends, so it can let the commit through and lose its answer
//! (`Mode::CommitLost`): the client's messages say which statements write `bookings`, the server's
//! `ReadyForQuery` says when a transaction has ended (status `I`).
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
}

impl ClientSide {
    /// Reads a chunk the client sent; true when it runs a statement that writes bookings.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.tls {
            return false;
        }
        self.framer.buf.extend_from_slice(chunk);
        let mut wrote = false;
        loop {
            if !self.started {
                let Some((_, body)) = self.framer.next(false) else {
                    return wrote;
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
                return wrote;
            };
            match kind {
                b'Q' => wrote |= writes_bookings(cstr(&body, 0).0),
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
                    wrote |= self.writers.contains(cstr(&body, next).0);
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
            if kind == b'Z' && body.first() == Some(&b'I') {
                seen.ended = true;
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
            wrote |= client.feed(std::slice::from_ref(byte));
        }
        assert!(!wrote, "parsing and binding a read writes nothing");
        assert!(client.feed(&message(b'B', b"\0s1\0\0\0\0\0\0\0")));
        assert!(client.feed(&message(b'Q', b"UPDATE bookings SET x = 1\0")));
        assert!(!client.feed(&message(b'Q', b"COMMIT\0")));
    }

    #[test]
    fn the_end_of_a_transaction_is_seen_after_the_ssl_refusal() {
        let mut server = ServerSide::default();
        let mut stream = vec![b'N'];
        stream.extend(message(b'R', &0u32.to_be_bytes()));
        stream.extend(message(b'Z', b"T"));
        assert_eq!(server.feed(&stream), Seen::default());
        let end = message(b'Z', b"I");
        assert!(!server.feed(&end[..3]).ended);
        assert!(server.feed(&end[3..]).ended);
    }

    #[test]
    fn tls_is_left_alone() {
        let mut server = ServerSide::default();
        assert!(server.feed(b"S").tls);
        assert_eq!(server.feed(&message(b'Z', b"I")), Seen::default());
    }
}
