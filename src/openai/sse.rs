//! Server-sent events as OpenAI streams use them: `data: {...}` events separated by a blank line,
//! ending with `data: [DONE]`. The decoder is incremental and bounded: an event larger than the
//! cap is an error, never an unbounded buffer.

use bytes::{Bytes, BytesMut};

/// One decoded event: its raw bytes (forwarded unchanged) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub raw: Bytes,
    pub data: String,
}

impl SseEvent {
    /// `data: [DONE]`, the end-of-stream marker.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SseError {
    #[error("an upstream SSE event exceeded {0} bytes")]
    EventTooLarge(usize),
}

/// Incremental decoder: feed byte chunks as they come, take whole events out.
#[derive(Debug)]
pub struct SseDecoder {
    buffer: BytesMut,
    max_event_bytes: usize,
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_event_bytes,
        }
    }

    /// Appends a chunk and returns every event it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let raw = self.buffer.split_to(end).freeze();
            events.push(SseEvent {
                data: data_of(&raw),
                raw,
            });
        }
        if self.buffer.len() > self.max_event_bytes {
            return Err(SseError::EventTooLarge(self.max_event_bytes));
        }
        Ok(events)
    }

    /// Bytes of an event that has not been terminated yet.
    pub fn pending(&self) -> &[u8] {
        &self.buffer
    }
}

/// Index just past the blank line that ends the first event, if one is complete.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The event's `data:` lines joined by `\n`, as the SSE specification says.
fn data_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut data = String::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    data
}

/// For each occurrence of `quoted_key` (e.g. `"\"finish_reason\""`) in a chunk's JSON text whose
/// value is a string, the text right after that string's opening quote. Lets the relay look at
/// chunks (finish reasons, first tokens) without parsing them, whatever the JSON spacing.
pub fn string_values<'a>(data: &'a str, quoted_key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    data.match_indices(quoted_key).filter_map(move |(at, _)| {
        data[at + quoted_key.len()..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start()
            .strip_prefix('"')
    })
}

/// Encodes one `data:` event.
pub fn encode_data(json: &str) -> Bytes {
    let mut out = String::with_capacity(json.len() + 8);
    out.push_str("data: ");
    out.push_str(json);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// The end-of-stream marker.
pub fn done_event() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut d = SseDecoder::new(1024);
            let mut events = d.push(&stream[..cut]).unwrap();
            events.extend(d.push(&stream[cut..]).unwrap());
            let data: Vec<_> = events.iter().map(|e| e.data.clone()).collect();
            assert_eq!(
                data,
                vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"],
                "cut at {cut}"
            );
            assert!(events[2].is_done());
            assert!(d.pending().is_empty());
        }
    }

    #[test]
    fn raw_bytes_are_kept_for_forwarding() {
        let mut d = SseDecoder::new(1024);
        let events = d
            .push(b": comment\nevent: x\ndata: 1\ndata: 2\n\nrest")
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            &events[0].raw[..],
            b": comment\nevent: x\ndata: 1\ndata: 2\n\n"
        );
        assert_eq!(events[0].data, "1\n2");
        assert_eq!(d.pending(), b"rest");
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut d = SseDecoder::new(8);
        assert_eq!(d.push(b"data: 0123456789"), Err(SseError::EventTooLarge(8)));
    }

    // ------------------------------------------------------------------ generated input

    use proptest::prelude::*;

    /// One line of an upstream stream, as backends write them.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,40}".prop_map(|d| format!("data: {d}")),
            "[ -~]{0,20}".prop_map(|d| format!("data:{d}")),
            "[ -~]{0,20}".prop_map(|c| format!(": {c}")),
            Just("event: message".to_string()),
            Just("data: [DONE]".to_string()),
            "\\PC{0,10}".prop_map(|d| format!("data: {d}")),
        ]
    }

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let event = (proptest::collection::vec(line(), 1..4), any::<bool>());
        proptest::collection::vec(event, 0..8).prop_map(|events| {
            let mut out = String::new();
            for (lines, crlf) in events {
                let eol = if crlf { "\r\n" } else { "\n" };
                for l in lines {
                    out.push_str(&l);
                    out.push_str(eol);
                }
                out.push_str(eol);
            }
            out.into_bytes()
        })
    }

    fn decode(
        bytes: &[u8],
        cuts: &[usize],
        cap: usize,
    ) -> Result<(Vec<SseEvent>, Vec<u8>), SseError> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        points.dedup();
        let mut decoder = SseDecoder::new(cap);
        let mut events = Vec::new();
        for w in points.windows(2) {
            events.extend(decoder.push(&bytes[w[0]..w[1]])?);
            assert!(decoder.pending().len() <= cap, "pending grew past the cap");
        }
        Ok((events, decoder.pending().to_vec()))
    }

    proptest! {
        #[test]
        fn decoding_does_not_depend_on_how_the_stream_is_cut(
            bytes in stream(),
            tail in proptest::collection::vec(any::<u8>(), 0..30),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut bytes = bytes;
            bytes.extend_from_slice(&tail);
            let cap = bytes.len() + 1;
            let whole = decode(&bytes, &[], cap).unwrap();
            let split = decode(&bytes, &cuts, cap).unwrap();
            prop_assert_eq!(&whole, &split);
            // Nothing is lost or invented: the raw events and what is pending are the input.
            let mut joined: Vec<u8> = whole.0.iter().flat_map(|e| e.raw.to_vec()).collect();
            joined.extend_from_slice(&whole.1);
            prop_assert_eq!(joined, bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_within_the_cap(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
            cap in 1usize..512,
        ) {
            // An event larger than the cap is an error, never a larger buffer.
            let _ = decode(&bytes, &cuts, cap);
        }
    }
}
