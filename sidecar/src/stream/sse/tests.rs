use super::*;

fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut s = Splitter::default();
    for c in chunks {
        s.push(Bytes::copy_from_slice(c)).unwrap();
    }
    s.finish();
    std::iter::from_fn(|| s.pop())
        .map(|e| e.raw.to_vec())
        .collect()
}

const STREAM: &[u8] = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";

#[test]
fn splits_events_with_any_line_ending() {
    let events = split_all(&[STREAM]);
    assert_eq!(events.len(), 5);
    assert_eq!(events[0], b"data: {\"a\":1}\n\n");
    assert_eq!(events[1], b": keep-alive\n\n");
    assert_eq!(events[2], b"data: {\"b\":2}\r\n\r\n");
    assert_eq!(events[4], b"data: [DONE]\n\n");
}

#[test]
fn every_split_point_gives_the_same_events() {
    let whole = split_all(&[STREAM]);
    for i in 0..=STREAM.len() {
        for j in i..=STREAM.len() {
            let got = split_all(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
            assert_eq!(got, whole, "split at {i}, {j}");
        }
    }
}

#[test]
fn data_joins_lines_and_ignores_other_fields() {
    let e = |s: &str| Event {
        raw: Bytes::from(s.to_string()),
    };
    assert_eq!(e("data: x\n\n").data().as_deref(), Some(&b"x"[..]));
    assert_eq!(e("data:x\n\n").data().as_deref(), Some(&b"x"[..]));
    assert_eq!(
        e("event: a\ndata: 1\ndata: 2\n\n").data().as_deref(),
        Some(&b"1\n2"[..])
    );
    assert_eq!(e(": ping\n\n").data(), None);
    assert_eq!(e("database: 1\n\n").data(), None);
    assert_eq!(e("id: 7\nretry: 10\n\n").data(), None);
}

#[test]
fn a_last_event_without_blank_line_still_counts() {
    let events = split_all(&[b"data: 1\n\ndata: [DONE]\n"]);
    assert_eq!(events.len(), 2);
    assert_eq!(
        Event {
            raw: Bytes::from(events[1].clone())
        }
        .data()
        .as_deref(),
        Some(&b"[DONE]"[..])
    );
    assert_eq!(split_all(&[b"data: 1\n\n  \n"]).len(), 1);
}

#[test]
fn whole_events_in_one_read_are_not_copied() {
    let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\n");
    let base = chunk.as_ptr() as usize;
    let mut s = Splitter::default();
    s.push(chunk).unwrap();
    let first = s.pop().unwrap();
    let second = s.pop().unwrap();
    assert_eq!(first.raw.as_ptr() as usize, base);
    assert_eq!(second.raw.as_ptr() as usize, base + 9);
}

#[test]
fn oversized_events_are_refused() {
    let mut s = Splitter::default();
    let big = Bytes::from(vec![b'a'; MAX_EVENT_BYTES + 1]);
    assert_eq!(s.push(big), Err(StreamError::TooLarge));
}

#[test]
fn garbage_never_panics() {
    fastrand::seed(42);
    for _ in 0..2000 {
        let len = fastrand::usize(0..64);
        let bytes: Vec<u8> = (0..len)
            .map(|_| *fastrand::choice(&[b'\n', b'\r', b'd', b':', b' ', b'a', 0xff]).unwrap())
            .collect();
        let mut s = Splitter::default();
        let cut = fastrand::usize(0..=len);
        s.push(Bytes::copy_from_slice(&bytes[..cut])).unwrap();
        s.push(Bytes::copy_from_slice(&bytes[cut..])).unwrap();
        s.finish();
        while let Some(e) = s.pop() {
            let _ = e.data();
        }
    }
}

#[test]
fn an_event_in_many_tiny_reads_is_scanned_once() {
    // 64 KiB of one event, one byte per read: with rescanning this is 2 billion byte
    // looks; resuming keeps it linear. The assertion is on the result; the test's speed
    // is what a regression would show.
    let mut s = Splitter::default();
    let mut event = b"data: ".to_vec();
    event.extend(std::iter::repeat_n(b'x', 64 * 1024));
    event.extend_from_slice(b"\r\n\r\n");
    for b in &event {
        s.push(Bytes::copy_from_slice(&[*b])).unwrap();
    }
    let got = s.pop().unwrap();
    assert_eq!(got.raw.len(), event.len());
    assert!(s.pop().is_none());
}
