//! Turning token bytes into text that is safe to stream: only complete UTF-8 characters,
//! and never a partial stop string.

/// Accumulates token bytes and releases the longest valid UTF-8 prefix. Tokenizers split
/// multi-byte characters across tokens (SmolLM2 splits most non-ASCII text), so decoding
/// each piece on its own would print U+FFFD where the user wrote Greek or emoji.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Checked by from_utf8 just above.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Bytes that can never become valid: the model really produced
                        // them, so show the replacement character once, then go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left when generation ends (an unfinished character).
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

/// Holds back text that could be the start of a stop string, so a stop string never
/// leaks partially into the answer.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

pub enum StopCheck {
    /// Text that can be shown now.
    Emit(String),
    /// A stop string was found; the text before it is the last to show.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        if self.stops.is_empty() {
            return StopCheck::Emit(text.to_owned());
        }
        self.held.push_str(text);
        if let Some(pos) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let before = self.held[..pos].to_owned();
            self.held.clear();
            return StopCheck::Stopped(before);
        }
        let keep = self.longest_partial_suffix();
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        StopCheck::Emit(emit)
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop string.
    fn longest_partial_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.held.len());
            for len in (best + 1..=max).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start) && stop.starts_with(&self.held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_joined() {
        let mut s = Utf8Stream::default();
        let bytes = "κ😀".as_bytes();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&s.push(&[*b]));
        }
        assert_eq!(out, "κ😀");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_one_replacement() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn stop_strings_never_leak() {
        let mut m = StopMatcher::new(&["</end>".to_owned()]);
        let mut shown = String::new();
        for piece in ["Hello", " wor", "ld</", "en"] {
            match m.push(piece) {
                StopCheck::Emit(t) => shown.push_str(&t),
                StopCheck::Stopped(_) => panic!("too early"),
            }
        }
        assert_eq!(shown, "Hello world");
        match m.push("d> tail") {
            StopCheck::Stopped(t) => shown.push_str(&t),
            StopCheck::Emit(_) => panic!("stop string missed"),
        }
        assert_eq!(shown, "Hello world");
    }

    #[test]
    fn held_text_is_released_when_it_cannot_match() {
        let mut m = StopMatcher::new(&["STOP".to_owned()]);
        let StopCheck::Emit(a) = m.push("xST") else {
            panic!()
        };
        assert_eq!(a, "x");
        let StopCheck::Emit(b) = m.push("x") else {
            panic!()
        };
        assert_eq!(b, "STx");
    }
}
