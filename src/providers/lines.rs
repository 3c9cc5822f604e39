//! Result files arrive as streams of JSONL; this splits them into lines as they come.

use bytes::{Bytes, BytesMut};

/// Splits a stream of bytes into lines as they arrive (output files can be large).
#[derive(Default)]
pub struct LineSplitter {
    pending: BytesMut,
}

impl LineSplitter {
    /// Feeds bytes; returns every complete line (without the newline).
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(i) = memchr::memchr(b'\n', &self.pending) {
            let line = self.pending.split_to(i + 1).freeze();
            let line = line.slice(..i);
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        lines
    }

    /// The last line when the file does not end with a newline.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.pending.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":1}\n{\"b\"").len() == 1);
        let rest = s.push(b":2}\n\n{\"c\":3}");
        assert_eq!(rest, vec![Bytes::from_static(b"{\"b\":2}")]);
        assert_eq!(s.finish(), Some(Bytes::from_static(b"{\"c\":3}")));
        assert_eq!(s.finish(), None);
    }
}
