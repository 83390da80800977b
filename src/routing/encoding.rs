//! The `Content-Encoding` of backend answers. AirGate asks backends for `identity`; a backend
//! that compresses anyway with `gzip` or `deflate` is decoded here, before anything reads the
//! body (usage, the guard, the cache, the client), with bounded output; any other coding is
//! refused. Compressed bytes are never forwarded under a header that does not say so (a gzip
//! answer once reached clients as `application/json`).

use std::io::Write;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use http::header::CONTENT_ENCODING;
use http::HeaderMap;

/// Compressed input is fed to the decoder in slices this small, so one slice can expand to at
/// most about a megabyte (deflate's ratio is bounded by about 1032:1) before the output bound is
/// checked: a small "zip bomb" cannot balloon memory in one call.
const INPUT_SLICE: usize = 1024;

/// Most decoded bytes one upstream chunk may become (well above the largest SSE event AirGate
/// accepts); whole answers are also bounded in total by the caller.
pub const MAX_DECODED_PER_CHUNK: usize = 8 * 1024 * 1024;

/// Decodes one answer's body.
pub enum BodyDecoder {
    Identity,
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodingError {
    #[error("the backend answered with Content-Encoding {0:?}, which AirGate does not decode (it asks for identity)")]
    Unsupported(String),
    #[error("the backend's {0} body could not be decoded")]
    Corrupt(&'static str),
    #[error("the backend's compressed body expands past {MAX_DECODED_PER_CHUNK} bytes per chunk")]
    TooLarge,
}

impl BodyDecoder {
    /// The decoder for an answer's headers: `identity` (or none), `gzip`/`x-gzip`, `deflate`.
    pub fn for_headers(headers: &HeaderMap) -> Result<Self, EncodingError> {
        let mut codings = headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity");
        let Some(coding) = codings.next() else {
            return Ok(BodyDecoder::Identity);
        };
        if codings.next().is_some() {
            return Err(EncodingError::Unsupported("several codings".into()));
        }
        match coding.as_str() {
            "gzip" | "x-gzip" => Ok(BodyDecoder::Gzip(flate2::write::GzDecoder::new(Vec::new()))),
            "deflate" => Ok(BodyDecoder::Deflate(flate2::write::ZlibDecoder::new(
                Vec::new(),
            ))),
            other => Err(EncodingError::Unsupported(other.to_string())),
        }
    }

    pub fn is_identity(&self) -> bool {
        matches!(self, BodyDecoder::Identity)
    }

    /// Decodes one chunk; the decoded bytes so far that the chunk completed.
    pub fn decode(&mut self, chunk: Bytes) -> Result<Bytes, EncodingError> {
        match self {
            BodyDecoder::Identity => Ok(chunk),
            BodyDecoder::Gzip(decoder) => feed(decoder, &chunk, "gzip"),
            BodyDecoder::Deflate(decoder) => feed(decoder, &chunk, "deflate"),
        }
    }

    /// The end of the body: what the decoder still held, and an error when the compressed
    /// stream was cut short.
    pub fn finish(&mut self) -> Result<Bytes, EncodingError> {
        match self {
            BodyDecoder::Identity => Ok(Bytes::new()),
            BodyDecoder::Gzip(decoder) => finish(decoder, "gzip"),
            BodyDecoder::Deflate(decoder) => finish(decoder, "deflate"),
        }
    }
}

/// What the two flate2 write-side decoders have in common.
trait Decoder: Write {
    fn buffer(&mut self) -> &mut Vec<u8>;
    fn end(&mut self) -> std::io::Result<()>;
}

impl Decoder for flate2::write::GzDecoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn end(&mut self) -> std::io::Result<()> {
        self.try_finish()
    }
}

impl Decoder for flate2::write::ZlibDecoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn end(&mut self) -> std::io::Result<()> {
        self.try_finish()
    }
}

fn finish(decoder: &mut impl Decoder, name: &'static str) -> Result<Bytes, EncodingError> {
    decoder.end().map_err(|_| EncodingError::Corrupt(name))?;
    Ok(Bytes::from(std::mem::take(decoder.buffer())))
}

fn feed(
    decoder: &mut impl Decoder,
    chunk: &[u8],
    name: &'static str,
) -> Result<Bytes, EncodingError> {
    for slice in chunk.chunks(INPUT_SLICE) {
        decoder
            .write_all(slice)
            .map_err(|_| EncodingError::Corrupt(name))?;
        if decoder.buffer().len() > MAX_DECODED_PER_CHUNK {
            return Err(EncodingError::TooLarge);
        }
    }
    Ok(Bytes::from(std::mem::take(decoder.buffer())))
}

/// An answer's body as decoded chunks (see [`BodyDecoder`]). Errors are the transport's or the
/// decoder's, as text.
pub fn decoded_body(
    response: reqwest::Response,
    decoder: BodyDecoder,
) -> BoxStream<'static, Result<Bytes, String>> {
    if decoder.is_identity() {
        return response
            .bytes_stream()
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed();
    }
    let chunks = response
        .bytes_stream()
        .map(Some)
        .chain(futures::stream::iter([None]));
    chunks
        .scan(Some(decoder), |state, item| {
            let Some(decoder) = state.as_mut() else {
                return futures::future::ready(None);
            };
            let out = match item {
                Some(Ok(chunk)) => decoder.decode(chunk).map_err(|e| e.to_string()),
                Some(Err(e)) => Err(e.to_string()),
                None => decoder.finish().map_err(|e| e.to_string()),
            };
            if out.is_err() {
                *state = None;
            }
            futures::future::ready(Some(out))
        })
        .filter(|out| futures::future::ready(!matches!(out, Ok(b) if b.is_empty())))
        .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, HeaderValue::from_str(encoding).unwrap());
        h
    }

    #[test]
    fn gzip_split_anywhere_decodes_to_the_original() {
        let original = br#"{"choices":[{"message":{"content":"hello"}}]}"#.repeat(50);
        let compressed = gzip(&original);
        for cut in [1, 7, compressed.len() / 2, compressed.len() - 1] {
            let mut d = BodyDecoder::for_headers(&headers("gzip")).unwrap();
            let mut out = Vec::new();
            out.extend_from_slice(
                &d.decode(Bytes::copy_from_slice(&compressed[..cut]))
                    .unwrap(),
            );
            out.extend_from_slice(
                &d.decode(Bytes::copy_from_slice(&compressed[cut..]))
                    .unwrap(),
            );
            out.extend_from_slice(&d.finish().unwrap());
            assert_eq!(out, original);
        }
    }

    #[test]
    fn unknown_codings_truncation_and_bombs_are_errors() {
        assert!(BodyDecoder::for_headers(&HeaderMap::new())
            .unwrap()
            .is_identity());
        assert!(BodyDecoder::for_headers(&headers("identity"))
            .unwrap()
            .is_identity());
        assert_eq!(
            BodyDecoder::for_headers(&headers("br")).err(),
            Some(EncodingError::Unsupported("br".into()))
        );
        assert!(BodyDecoder::for_headers(&headers("gzip, gzip")).is_err());
        let compressed = gzip(b"{\"a\":1}");
        let mut d = BodyDecoder::for_headers(&headers("gzip")).unwrap();
        d.decode(Bytes::copy_from_slice(&compressed[..compressed.len() - 4]))
            .unwrap();
        assert!(d.finish().is_err(), "a truncated gzip body must not pass");
        let bomb = gzip(&vec![b'a'; 64 * 1024 * 1024]);
        assert!(bomb.len() < 200 * 1024);
        let mut d = BodyDecoder::for_headers(&headers("gzip")).unwrap();
        assert_eq!(
            d.decode(Bytes::from(bomb)).err(),
            Some(EncodingError::TooLarge)
        );
    }
}
