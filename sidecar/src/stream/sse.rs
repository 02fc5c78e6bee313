//! Server-sent events: splitting an upstream byte stream into events.
//!
//! Events are handed on as the original bytes (terminator included), sliced out of the
//! upstream's buffers without copying when an event lies within one read, which is the
//! common case. Only a partial event left at the end of a read is copied, to join it with
//! the next read.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::provider::UpstreamBody;

/// The longest event accepted; a longer one means a broken or hostile upstream.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One event, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub raw: Bytes,
}

/// Why the upstream stream could not be read further.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("upstream stream broke: {0}")]
    Body(String),
    #[error("upstream sent an event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

/// Splits bytes into events; feed it with [`Splitter::push`], drain with
/// [`Splitter::pop`]. Separate from the body so it can be tested on any chunking.
#[derive(Debug, Default)]
pub struct Splitter {
    partial: BytesMut,
    /// How far `partial` has been scanned for an event's end.
    scan: Scan,
    ready: VecDeque<Bytes>,
}

/// Where a scan for an event's end stopped: the next byte to look at, and where the line
/// being scanned began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Scan {
    next: usize,
    line_start: usize,
}

/// Events read from an upstream body.
pub struct Decoder {
    body: UpstreamBody,
    splitter: Splitter,
    done: bool,
}

// === impl Event ===

impl Event {
    /// The event's data: its `data:` lines joined by `\n`, or `None` when it has none
    /// (a comment or keep-alive). Borrowed when the event has one data line.
    pub fn data(&self) -> Option<Cow<'_, [u8]>> {
        let mut found: Option<Cow<'_, [u8]>> = None;
        for line in lines(&self.raw) {
            let Some(rest) = line.strip_prefix(b"data") else {
                continue;
            };
            let value = match rest {
                [] => &[][..],
                [b':', b' ', v @ ..] | [b':', v @ ..] => v,
                // A field named e.g. "database": not data.
                _ => continue,
            };
            found = Some(match found {
                None => Cow::Borrowed(value),
                Some(prev) => {
                    let mut joined = prev.into_owned();
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                    Cow::Owned(joined)
                }
            });
        }
        found
    }
}

/// Lines of `raw` without their terminators (`\n`, `\r\n` or `\r`), empty lines dropped.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|b| *b == b'\n' || *b == b'\r')
        .filter(|l| !l.is_empty())
}

// === impl Splitter ===

impl Splitter {
    pub fn push(&mut self, chunk: Bytes) -> Result<(), StreamError> {
        let (mut work, mut scan) = if self.partial.is_empty() {
            (chunk, Scan::default())
        } else {
            self.partial.extend_from_slice(&chunk);
            // The partial event was scanned up to `self.scan` already: go on from there,
            // so an event arriving in many small reads is scanned once, not once per read.
            (self.partial.split().freeze(), self.scan)
        };
        loop {
            match event_end(&work, scan) {
                Ok(end) => {
                    self.ready.push_back(work.split_to(end));
                    scan = Scan::default();
                }
                Err(stopped) => {
                    scan = stopped;
                    break;
                }
            }
        }
        if work.len() > MAX_EVENT_BYTES {
            return Err(StreamError::TooLarge);
        }
        self.scan = scan;
        if !work.is_empty() {
            self.partial.extend_from_slice(&work);
        }
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Event> {
        self.ready.pop_front().map(|raw| Event { raw })
    }

    /// At end of stream: a last event without its blank line still counts, because
    /// some servers end with `data: [DONE]\n`.
    pub fn finish(&mut self) {
        if self.partial.iter().any(|b| !b.is_ascii_whitespace()) {
            let mut last = self.partial.split();
            last.extend_from_slice(b"\n\n");
            self.ready.push_back(last.freeze());
        }
        self.partial.clear();
        self.scan = Scan::default();
    }
}

/// The index just past the blank line that ends the first event in `buf`, scanning from
/// `from`; or where the scan stopped, to resume once more bytes arrive.
fn event_end(buf: &[u8], from: Scan) -> Result<usize, Scan> {
    let Scan {
        next: mut i,
        mut line_start,
    } = from;
    while let Some(offset) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let pos = i + offset;
        let eol = match buf[pos] {
            b'\r' => match buf.get(pos + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                // A lone '\r' at the end may be the start of "\r\n": look again later.
                None => {
                    return Err(Scan {
                        next: pos,
                        line_start,
                    });
                }
            },
            _ => 1,
        };
        if pos == line_start {
            return Ok(pos + eol);
        }
        line_start = pos + eol;
        i = line_start;
    }
    Err(Scan {
        next: buf.len(),
        line_start,
    })
}

// === impl Decoder ===

impl Decoder {
    pub fn new(body: UpstreamBody) -> Self {
        Self {
            body,
            splitter: Splitter::default(),
            done: false,
        }
    }

    /// The next event, `None` at the end. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Result<Event, StreamError>> {
        loop {
            if let Some(event) = self.splitter.pop() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && let Err(e) = self.splitter.push(data)
                    {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(StreamError::Body(e.to_string())));
                }
                None => {
                    self.done = true;
                    self.splitter.finish();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
