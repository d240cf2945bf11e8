//! Splitting a syslog TCP stream into messages (RFC 6587).
//!
//! Two framings exist and senders do not announce which they use, so it is decided per
//! message, the way rsyslog does: a frame that starts with `LEN SP` (1–9 digits then a
//! space) is octet-counted; anything else runs to the next LF. Real messages start with
//! `<`, so the two never collide in practice.
//!
//! Memory stays bounded whatever the peer sends: a frame longer than `max` is cut at
//! `max` bytes (flagged truncated) and the rest of it is skipped as it arrives, so the
//! buffer never has to hold more than `max` plus a length header.

use bytes::{Buf, Bytes, BytesMut};

/// One message from the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub data: Bytes,
    /// The sender's message was longer than the limit; `data` is its beginning.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    /// The rest of an oversized octet-counted frame.
    Bytes(usize),
    /// The rest of an oversized LF-terminated frame.
    ToNewline,
}

/// Incremental decoder: feed it the connection's buffer after every read.
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    skip: Skip,
}

/// Longest length prefix we accept: 9 digits (< 1 GB), more is not a length.
const MAX_LEN_DIGITS: usize = 9;

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder {
            max: max.max(1),
            skip: Skip::None,
        }
    }

    /// How many bytes the buffer may need to hold for the next frame to be decodable.
    pub fn buffer_limit(&self) -> usize {
        self.max + MAX_LEN_DIGITS + 2
    }

    /// The next complete frame in `buf`, consuming it; `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        match self.skip {
            Skip::None => {}
            Skip::Bytes(n) => {
                let k = n.min(buf.len());
                buf.advance(k);
                if k < n {
                    self.skip = Skip::Bytes(n - k);
                    return None;
                }
                self.skip = Skip::None;
            }
            Skip::ToNewline => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    buf.advance(i + 1);
                    self.skip = Skip::None;
                }
                None => {
                    buf.clear();
                    return None;
                }
            },
        }
        if buf.is_empty() {
            return None;
        }
        match self.octet_header(buf) {
            Header::NeedMore => None,
            Header::Counted { header, len } => self.counted(buf, header, len),
            Header::NotCounted => self.newline(buf),
        }
    }

    /// What is left when the peer closes: a last message without its LF, or the start of
    /// an octet-counted frame that never completed (flagged truncated).
    pub fn finish(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if self.skip != Skip::None || buf.is_empty() {
            buf.clear();
            return None;
        }
        let frame = match self.octet_header(buf) {
            Header::Counted { header, .. } => {
                buf.advance(header);
                Frame {
                    data: buf.split().freeze(),
                    truncated: true,
                }
            }
            _ => Frame {
                data: buf.split().freeze(),
                truncated: false,
            },
        };
        (!frame.data.is_empty()).then_some(frame)
    }

    fn octet_header(&self, buf: &[u8]) -> Header {
        let digits = buf
            .iter()
            .take(MAX_LEN_DIGITS + 1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > MAX_LEN_DIGITS {
            return Header::NotCounted;
        }
        match buf.get(digits) {
            None => Header::NeedMore,
            Some(b' ') => {
                let len = buf[..digits]
                    .iter()
                    .fold(0usize, |acc, &c| acc * 10 + usize::from(c - b'0'));
                Header::Counted {
                    header: digits + 1,
                    len,
                }
            }
            Some(_) => Header::NotCounted,
        }
    }

    fn counted(&mut self, buf: &mut BytesMut, header: usize, len: usize) -> Option<Frame> {
        if len <= self.max {
            if buf.len() < header + len {
                return None;
            }
            buf.advance(header);
            return Some(Frame {
                data: buf.split_to(len).freeze(),
                truncated: false,
            });
        }
        if buf.len() < header + self.max {
            return None;
        }
        buf.advance(header);
        let data = buf.split_to(self.max).freeze();
        self.skip = Skip::Bytes(len - self.max);
        Some(Frame {
            data,
            truncated: true,
        })
    }

    fn newline(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) if i <= self.max => {
                let mut data = buf.split_to(i + 1);
                data.truncate(i);
                Some(Frame {
                    data: data.freeze(),
                    truncated: false,
                })
            }
            Some(i) => {
                let data = buf.split_to(self.max).freeze();
                buf.advance(i + 1 - self.max);
                Some(Frame {
                    data,
                    truncated: true,
                })
            }
            None if buf.len() > self.max => {
                let data = buf.split_to(self.max).freeze();
                self.skip = Skip::ToNewline;
                Some(Frame {
                    data,
                    truncated: true,
                })
            }
            None => None,
        }
    }
}

enum Header {
    NeedMore,
    Counted { header: usize, len: usize },
    NotCounted,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder, input: &[u8], chunk: usize) -> Vec<(String, bool)> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(c);
            while let Some(f) = d.decode(&mut buf) {
                out.push((String::from_utf8_lossy(&f.data).into_owned(), f.truncated));
            }
            assert!(
                buf.len() <= d.buffer_limit() + chunk,
                "buffer grew to {}",
                buf.len()
            );
        }
        if let Some(f) = d.finish(&mut buf) {
            out.push((String::from_utf8_lossy(&f.data).into_owned(), f.truncated));
        }
        out
    }

    #[test]
    fn mixed_framing_any_chunking() {
        let input = b"5 <1>ab<2>lf one\n9 <3>x\ny z\n<4>last";
        for chunk in 1..input.len() {
            let got = all(&mut Decoder::new(100), input, chunk);
            assert_eq!(
                got,
                vec![
                    ("<1>ab".into(), false),
                    ("<2>lf one".into(), false),
                    ("<3>x\ny z\n".into(), false),
                    ("<4>last".into(), false)
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_cut_and_skipped() {
        let mut input = b"20 0123456789abcdefghij".to_vec();
        input.extend_from_slice(b"0123456789abcdefghijklmn\n<5>ok\n");
        for chunk in 1..8 {
            let got = all(&mut Decoder::new(8), &input, chunk);
            assert_eq!(
                got,
                vec![
                    ("01234567".into(), true),
                    ("01234567".into(), true),
                    ("<5>ok".into(), false)
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn digits_that_are_not_a_length() {
        let got = all(&mut Decoder::new(100), b"1234567890123 x\n12x y\n", 3);
        assert_eq!(
            got,
            vec![("1234567890123 x".into(), false), ("12x y".into(), false)]
        );
    }

    #[test]
    fn incomplete_counted_frame_at_close() {
        let got = all(&mut Decoder::new(100), b"50 <1>partial", 4);
        assert_eq!(got, vec![("<1>partial".into(), true)]);
    }

    #[test]
    fn empty_frames() {
        let got = all(&mut Decoder::new(100), b"\n0 \n", 1);
        assert_eq!(
            got,
            vec![("".into(), false), ("".into(), false), ("".into(), false)]
        );
    }
}
