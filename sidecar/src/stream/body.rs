//! The body of every proxy response: whole, or a stream fed by the relay.
//!
//! The stream's channel is bounded, so a slow client slows the relay, which stops reading
//! the upstream: backpressure end to end. When the client goes away hyper drops this
//! body, the relay's next send fails and it drops the upstream request.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Frames buffered between relay and client: a few events' worth, enough to keep both
/// sides busy without holding a response in memory.
pub const CHANNEL_FRAMES: usize = 16;

/// What the sidecar answers with.
#[derive(Debug)]
pub enum ProxyBody {
    /// A whole body (taken when sent).
    Full(Option<Bytes>),
    /// Events as the relay sends them.
    Stream(mpsc::Receiver<Bytes>),
    /// A recorded stream replayed (from the response cache), one frame per event.
    Frames(std::vec::IntoIter<Bytes>),
}

// === impl ProxyBody ===

impl ProxyBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::Full(Some(bytes))
    }

    /// A streamed body and the sender that feeds it.
    pub fn channel() -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        (tx, Self::Stream(rx))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
            Self::Frames(frames) => Poll::Ready(frames.next().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Frames(f) => f.len() == 0,
            Self::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream(_) | Self::Frames(_) => SizeHint::default(),
        }
    }
}

/// A whole body.
pub fn full(bytes: Bytes) -> ProxyBody {
    ProxyBody::full(bytes)
}

/// Why [`collect_limited`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Body(String),
}

/// Reads a whole body, refusing more than `limit` bytes.
///
/// Written out rather than `http_body_util::Limited`, whose boxed-error bound trips the
/// compiler's `Send` check when used inside the spawned request futures.
pub async fn collect_limited<B>(mut body: B, limit: usize) -> Result<Bytes, CollectError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CollectError::Body(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(CollectError::TooLarge(limit));
        }
        // One frame (the usual case) is kept as is; more are joined.
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut joined = bytes::BytesMut::with_capacity(f.len() + data.len());
                joined.extend_from_slice(f);
                joined.extend_from_slice(&data);
                rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(joined)) => joined.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
