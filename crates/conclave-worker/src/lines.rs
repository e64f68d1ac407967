//! Line reading with a cap: `BufRead::lines` grows its buffer until a newline comes, so a
//! peer that never sends one would take all our memory, and it fails on the first byte
//! that is not UTF-8. Here a line longer than the cap is skipped up to its newline and
//! reported, and invalid bytes become U+FFFD (the JSON parser then says what is wrong).

use std::io::BufRead;

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// A line over the cap, skipped; `len` bytes were read of it.
    TooLong {
        len: usize,
    },
    Eof,
}

pub struct CappedLines<R> {
    reader: R,
    max: usize,
}

impl<R: BufRead> CappedLines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        Self { reader, max }
    }

    pub fn next_line(&mut self) -> std::io::Result<Line> {
        let mut buf = Vec::new();
        let mut len = 0usize;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(if len == 0 {
                    Line::Eof
                } else if len > self.max {
                    Line::TooLong { len }
                } else {
                    Line::Text(String::from_utf8_lossy(&buf).into_owned())
                });
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = self.max.saturating_sub(buf.len());
            // Past the cap, bytes are counted and dropped: memory stays at `max`.
            buf.extend_from_slice(&chunk[..take.min(room)]);
            len += take;
            self.reader.consume(take);
            if done {
                if len > self.max + 1 {
                    return Ok(Line::TooLong { len });
                }
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                return Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = CappedLines::new(std::io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        loop {
            match r.next_line() {
                Ok(Line::Eof) | Err(_) => break,
                Ok(l) => out.push(l),
            }
        }
        out
    }

    #[test]
    fn long_lines_are_skipped_and_the_next_one_is_read() {
        let lines = read_all(b"short\nmuch too long a line\nok\nlast", 8);
        assert_eq!(
            lines,
            [
                Line::Text("short".into()),
                Line::TooLong { len: 21 },
                Line::Text("ok".into()),
                Line::Text("last".into()),
            ]
        );
        // Exactly the cap, newline not counted.
        assert_eq!(read_all(b"12345678\n", 8), [Line::Text("12345678".into())]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(
            read_all(b"a\xffb\nnext\n", 16),
            [Line::Text("a\u{fffd}b".into()), Line::Text("next".into())]
        );
    }
}
