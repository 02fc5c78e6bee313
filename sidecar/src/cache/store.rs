//! Stored answers: a map from [`CacheKey`] to [`Entry`], bounded in bytes, each entry with
//! its own time to live (a route's policy decides how long its answers stay true).
//!
//! Built on moka: concurrent reads without a global lock, eviction by weight, and expiry
//! per entry with timer wheels rather than a scan. Eviction is least-recently-used, not
//! moka's default TinyLFU: TinyLFU admits a new entry only when it has been asked for more
//! often than the entries it would displace, so in a full cache a first answer would be
//! dropped and its repeat paid again; the repeat (a retry, a re-run) is what the cache is
//! for.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moka::Expiry;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::CacheKey;

/// What an entry costs besides its payload (key, map slot, `Arc`, timestamps, moka's
/// bookkeeping), so that many tiny answers are bounded too.
const ENTRY_OVERHEAD: usize = 128;

/// An answer as the client first received it, to be replayed byte for byte.
#[derive(Clone)]
pub enum Answer {
    /// A whole response: its status and JSON body.
    Unary { status: u16, body: Bytes },
    /// A streamed response: the client-facing SSE bytes as sent, one element per write,
    /// so a replay writes the same frames.
    Stream { frames: Vec<Bytes> },
}

/// A stored answer and where it came from.
#[derive(Clone, Debug)]
pub struct Entry {
    pub answer: Answer,
    /// The label of the target that answered (for metrics and response headers).
    pub target: Arc<str>,
    /// When the answer was stored (for an `Age` header).
    pub stored_at: SystemTime,
}

/// Answers by key, at most `max_bytes` of them by [`Entry::bytes`], each expiring after the
/// time to live it was inserted with. Cheap to share: the map is internally synchronized.
pub struct ResponseCache {
    entries: Cache<CacheKey, Slot>,
    max_bytes: u64,
}

/// Keeps the frames of a stream while it is relayed, up to a limit: an answer too large to
/// cache stops costing memory as soon as it passes the limit, not when it ends.
///
/// Frames are `Bytes` handles sharing the relay's buffers, so recording copies nothing.
#[derive(Debug)]
pub struct StreamRecorder {
    frames: Vec<Bytes>,
    bytes: usize,
    limit: usize,
    overflowed: bool,
}

/// A map value: the entry, and the time to live moka reads through [`PerEntryTtl`].
#[derive(Clone)]
struct Slot {
    entry: Arc<Entry>,
    ttl: Duration,
}

/// Expires each entry after its own [`Slot::ttl`], counted from its last insert.
struct PerEntryTtl;

// === impl Answer ===

impl fmt::Debug for Answer {
    /// Sizes, not contents: answers are user data and can be megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Unary { status, body } => f
                .debug_struct("Unary")
                .field("status", status)
                .field("bytes", &body.len())
                .finish(),
            Answer::Stream { frames } => f
                .debug_struct("Stream")
                .field("frames", &frames.len())
                .field("bytes", &frames.iter().map(Bytes::len).sum::<usize>())
                .finish(),
        }
    }
}

// === impl Entry ===

impl Entry {
    /// The memory the entry is charged for: payload, target label, the frame handles of a
    /// stream, and a fixed overhead.
    pub fn bytes(&self) -> usize {
        let payload = match &self.answer {
            Answer::Unary { body, .. } => body.len(),
            Answer::Stream { frames } => frames
                .iter()
                .map(|frame| frame.len() + size_of::<Bytes>())
                .sum(),
        };
        ENTRY_OVERHEAD + self.target.len() + payload
    }
}

// === impl ResponseCache ===

impl ResponseCache {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key, slot: &Slot| u32::try_from(slot.entry.bytes()).unwrap_or(u32::MAX))
            .expire_after(PerEntryTtl)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { entries, max_bytes }
    }

    /// The live entry for `key`; an expired one is never returned, even before it is evicted.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.entries.get(key).map(|slot| slot.entry)
    }

    /// Stores `entry` under `key` for `ttl`, replacing any entry there and evicting the least
    /// recently used ones if the cache is full. Returns false, and stores nothing, for an
    /// entry larger than an eighth of the cache (a few huge answers must not push out many
    /// small ones) or a zero `ttl`.
    pub fn insert(&self, key: CacheKey, entry: Entry, ttl: Duration) -> bool {
        // Within u32 too, so the weigher never has to clamp.
        let limit = (self.max_bytes / 8).min(u64::from(u32::MAX));
        if entry.bytes() as u64 > limit || ttl.is_zero() {
            return false;
        }
        let entry = Arc::new(entry);
        self.entries.insert(key, Slot { entry, ttl });
        true
    }

    /// The number of entries and their total [`Entry::bytes`]. Approximate: moka applies
    /// inserts and evictions in batches, so these trail the latest operations briefly.
    pub fn stats(&self) -> (u64, u64) {
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

impl fmt::Debug for ResponseCache {
    /// Sizes only (the entries are user data).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (entries, bytes) = self.stats();
        f.debug_struct("ResponseCache")
            .field("max_bytes", &self.max_bytes)
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish()
    }
}

// === impl PerEntryTtl ===

impl Expiry<CacheKey, Slot> for PerEntryTtl {
    fn expire_after_create(&self, _key: &CacheKey, slot: &Slot, _now: Instant) -> Option<Duration> {
        Some(slot.ttl)
    }

    /// A replaced entry lives for its new time to live (moka's default keeps the old
    /// deadline).
    fn expire_after_update(
        &self,
        _key: &CacheKey,
        slot: &Slot,
        _now: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

// === impl StreamRecorder ===

impl StreamRecorder {
    /// A recorder that gives up once the frames pass `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            frames: Vec::new(),
            bytes: 0,
            limit,
            overflowed: false,
        }
    }

    /// Records `frame` (a handle clone, no copy). Past the limit, drops what it has and
    /// ignores the rest of the stream.
    pub fn push(&mut self, frame: &Bytes) {
        if self.overflowed {
            return;
        }
        self.bytes = self.bytes.saturating_add(frame.len());
        if self.bytes > self.limit {
            self.overflowed = true;
            self.frames = Vec::new();
            return;
        }
        self.frames.push(frame.clone());
    }

    /// The recorded frames, or `None` if the stream passed the limit.
    pub fn finish(self) -> Option<Vec<Bytes>> {
        (!self.overflowed).then_some(self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        let body = format!(r#"{{"n":{n}}}"#);
        crate::cache::key_of("chat", "gpt-4o", false, body.as_bytes()).expect("an object")
    }

    fn unary(len: usize) -> Entry {
        Entry {
            answer: Answer::Unary {
                status: 200,
                body: Bytes::from(vec![b'x'; len]),
            },
            target: Arc::from("openai/gpt-4o"),
            stored_at: SystemTime::UNIX_EPOCH,
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn get_after_insert() {
        let cache = ResponseCache::new(1 << 20);
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.insert(key(1), unary(10), MINUTE));
        let entry = cache.get(&key(1)).expect("just inserted");
        assert_eq!(&*entry.target, "openai/gpt-4o");
        assert!(matches!(&entry.answer, Answer::Unary { status: 200, body } if body.len() == 10));
        assert!(cache.get(&key(2)).is_none());
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let cache = ResponseCache::new(1 << 20);
        let ttl = Duration::from_millis(50);
        assert!(cache.insert(key(1), unary(10), ttl));
        assert!(cache.insert(key(2), unary(10), MINUTE));
        // moka reads its own clock, so real time has to pass.
        tokio::time::sleep(3 * ttl).await;
        assert!(cache.get(&key(1)).is_none(), "expired after 3× its TTL");
        assert!(cache.get(&key(2)).is_some(), "another TTL is its own");
    }

    #[test]
    fn eviction_keeps_the_weighted_size_within_the_bound() {
        let max = 64 * 1024;
        let cache = ResponseCache::new(max);
        let entry_bytes = unary(1000).bytes() as u64;
        for n in 0..=u8::MAX {
            assert!(cache.insert(key(n), unary(1000), MINUTE));
        }
        cache.entries.run_pending_tasks();
        let (entries, bytes) = cache.stats();
        assert!(bytes <= max, "{bytes} bytes in a cache of {max}");
        assert_eq!(bytes, entries * entry_bytes);
        assert!(cache.get(&key(0)).is_none(), "the oldest entry is evicted");
        assert!(
            cache.get(&key(u8::MAX)).is_some(),
            "the newest entry is kept"
        );
        let kept = (0..=u8::MAX)
            .filter(|n| cache.get(&key(*n)).is_some())
            .count();
        assert!(kept < 256 && kept as u64 == entries, "{kept} of 256 kept");
    }

    #[test]
    fn an_entry_over_an_eighth_of_the_cache_is_not_stored() {
        let cache = ResponseCache::new(8 * 1024);
        assert!(!cache.insert(key(1), unary(1024), MINUTE));
        assert!(!cache.insert(key(2), unary(10), Duration::ZERO));
        assert!(cache.insert(key(3), unary(10), MINUTE));
        cache.entries.run_pending_tasks();
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(2)).is_none());
        assert_eq!(cache.stats(), (1, unary(10).bytes() as u64));
    }

    #[test]
    fn recorder_keeps_frames_within_its_limit() {
        let frames = [
            Bytes::from_static(b"data: 1\n\n"),
            Bytes::from_static(b"data: 2\n\n"),
        ];
        let mut recorder = StreamRecorder::new(18);
        frames.iter().for_each(|f| recorder.push(f));
        assert_eq!(recorder.finish(), Some(frames.to_vec()));

        let mut recorder = StreamRecorder::new(17);
        frames.iter().for_each(|f| recorder.push(f));
        assert!(recorder.frames.is_empty(), "memory freed at the overflow");
        recorder.push(&Bytes::from_static(b"x"));
        assert_eq!(recorder.finish(), None);
    }
}
