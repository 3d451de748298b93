//! Request-smuggling defence: spots ambiguous HTTP/1.1 message framing on the wire.
//!
//! hyper parses every request, and where framing is ambiguous it picks the safe reading
//! (`Transfer-Encoding` wins over `Content-Length`, the connection then closes) and hides the
//! ambiguity. A sidecar in a chain of proxies should not guess: a request that carries both
//! `Content-Length` and `Transfer-Encoding`, or more than one `Content-Length` (even with equal
//! values), or an unparseable one, may be read differently by whoever sits in front of
//! meetgate. So are `chunked` named more than once in `Transfer-Encoding` (in one line or
//! several): RFC 9112 forbids it, and a proxy may decode it once or twice. Such requests are
//! refused with 400 and the connection is closed.
//!
//! A `Content-Length` too large for any body (over 2^64 - 3, the most hyper can represent)
//! is a verdict of its own, [`Verdict::TooLarge`]: hyper would answer it with an empty 431 or
//! 400 before meetgate sees the request, so the connection guard holds such a head back
//! from hyper and answers 413 `MEETGATE.PAYLOAD_TOO_LARGE` itself (see [`crate::server`]).
//!
//! [`Inspector`] sees the same bytes hyper reads (the connection guard feeds it from
//! `poll_read`) and follows message boundaries itself: the head up to the empty line, then a
//! body of `Content-Length` bytes or a chunked body up to its last chunk and trailers. It
//! never changes or delays a byte. Whenever it cannot follow the stream (a head it cannot
//! parse or that is too long, a malformed chunk), it fails closed: the framing counts as
//! ambiguous, because a connection it stops inspecting is one a smuggler could use. A
//! chunk-size line over 1 KiB or a trailer line over 8 KiB,
//! which hyper accepts (it takes 16 KiB of chunk extensions, any run of spaces after a size,
//! and trailers up to `listen.max_header_bytes`), counts as ambiguous: the inspector does not
//! buffer that much, and giving up would leave the rest of the connection uninspected.

/// What the inspector concluded about the connection's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No ambiguity seen.
    Clean,
    /// A request had ambiguous framing; the reason, for the error message.
    Ambiguous(&'static str),
    /// A request declared a `Content-Length` larger than hyper can represent.
    TooLarge,
}

/// An [`Inspector`] shared by a connection's reader, which feeds it every byte, and the
/// connection's requests, which ask for its verdict when they start and again once their
/// body (and its trailers) has been read.
#[derive(Debug)]
pub struct SharedInspector(std::sync::Mutex<Inspector>);

impl SharedInspector {
    pub fn new(max_head: usize, max_headers: usize) -> Self {
        SharedInspector(std::sync::Mutex::new(Inspector::new(max_head, max_headers)))
    }

    pub fn feed(&self, data: &[u8]) {
        self.lock().feed(data);
    }

    /// Why the stream's framing is ambiguous, if it is (so far).
    pub fn ambiguity(&self) -> Option<&'static str> {
        match self.lock().verdict() {
            Verdict::Clean => None,
            Verdict::Ambiguous(why) => Some(why),
            // Its head never reaches hyper, so no request asks; were one to, it is refused.
            Verdict::TooLarge => Some("a Content-Length larger than any body"),
        }
    }

    /// Whether a request declared a `Content-Length` larger than hyper can represent.
    pub fn too_large(&self) -> bool {
        self.lock().verdict() == Verdict::TooLarge
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inspector> {
        // The inspector's state stays consistent between calls: a panic elsewhere while the
        // lock was held leaves nothing half-done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Follows HTTP/1.1 request framing over a byte stream.
#[derive(Debug)]
pub struct Inspector {
    state: State,
    head: Vec<u8>,
    max_head: usize,
    /// As many header fields as hyper accepts (`listen.max_headers`).
    max_headers: usize,
}

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    /// A request had ambiguous framing (the reason): nothing more to learn, since meetgate
    /// refuses it and closes the connection.
    Ambiguous(&'static str),
    /// A request declared a body too large for hyper: refused, the connection closed.
    TooLarge,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    Data(u64),
    /// The CRLF after a chunk's data (bytes still to skip).
    DataEnd(u8),
    /// Trailer lines after the last chunk, until an empty line.
    Trailer(Vec<u8>),
}

impl Inspector {
    pub fn new(max_head: usize, max_headers: usize) -> Self {
        Inspector {
            state: State::Head,
            head: Vec::new(),
            max_head,
            max_headers,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self.state {
            State::Ambiguous(why) => Verdict::Ambiguous(why),
            State::TooLarge => Verdict::TooLarge,
            _ => Verdict::Clean,
        }
    }

    /// Feeds the next bytes read from the connection.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            data = match &mut self.state {
                State::Ambiguous(_) | State::TooLarge => return,
                State::Head => self.feed_head(data),
                State::Body(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    &data[n as usize..]
                }
                State::Chunked(_) => self.feed_chunked(data),
            };
        }
    }

    fn feed_head<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        // Search only where the end of the head can newly appear.
        let from = self.head.len().saturating_sub(2);
        self.head.extend_from_slice(data);
        let Some(end) = head_end(&self.head, from) else {
            if self.head.len() > self.max_head {
                self.state = State::Ambiguous("a request head larger than listen.max_header_bytes");
            }
            return &[];
        };
        let consumed = data.len() - (self.head.len() - end);
        let head = std::mem::take(&mut self.head);
        if end > self.max_head {
            // Refused however it arrives, whole or in pieces.
            self.state = State::Ambiguous("a request head larger than listen.max_header_bytes");
            return &[];
        }
        self.state = self.framing(&head[..end]);
        &data[consumed..]
    }

    /// Decides how the body of the request whose head is `head` is framed.
    fn framing(&mut self, head: &[u8]) -> State {
        // Blank lines before a request line are tolerated by servers (RFC 9112 §2.2).
        let trimmed = &head[head
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count()..];
        if trimmed.is_empty() {
            return State::Head;
        }
        // hyper accepts a bare LF as a line end (RFC 9112 allows it); a proxy in front may
        // not, and would then see different headers. Refuse rather than guess.
        let bare_lf = trimmed
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\n' && (i == 0 || trimmed[i - 1] != b'\r'));
        if bare_lf {
            return State::Ambiguous("bare LF line endings");
        }
        // With listen.max_headers at most 64 (the default is 64) the fields are parsed into
        // an array on the stack; a larger setting gets a Vec of that many slots, the most
        // hyper accepts, so a head hyper parses is never refused here for its length.
        let mut few = [httparse::EMPTY_HEADER; 64];
        let mut many;
        let slots: &mut [httparse::Header] = if self.max_headers <= few.len() {
            &mut few
        } else {
            many = vec![httparse::EMPTY_HEADER; self.max_headers];
            &mut many
        };
        let mut req = httparse::Request::new(slots);
        match req.parse(trimmed) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return State::Ambiguous("a request head that cannot be parsed"),
        }
        let mut lengths = Vec::new();
        let mut codings = Vec::new();
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                lengths.push(h.value);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                codings.push(h.value);
            }
        }
        if !lengths.is_empty() && !codings.is_empty() {
            return State::Ambiguous("both Content-Length and Transfer-Encoding");
        }
        if lengths.len() > 1 {
            return State::Ambiguous("more than one Content-Length");
        }
        if let Some(len) = lengths.first() {
            return match content_length(len) {
                Some(0) => State::Head,
                Some(n) if n <= MAX_CONTENT_LENGTH => State::Body(n),
                Some(_) => State::TooLarge,
                None if !len.is_empty() && len.iter().all(u8::is_ascii_digit) => State::TooLarge,
                None => State::Ambiguous("an invalid Content-Length"),
            };
        }
        if !codings.is_empty() {
            let mut listed = codings
                .iter()
                .flat_map(|v| v.split(|b| *b == b','))
                .map(|c| c.trim_ascii());
            let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
            if listed.clone().filter(|c| chunked(c)).count() > 1 {
                return State::Ambiguous("chunked named more than once in Transfer-Encoding");
            }
            return match listed.next_back() {
                Some(c) if chunked(c) => State::Chunked(Chunk::Size(Vec::new())),
                _ => State::Ambiguous("a Transfer-Encoding that does not end in chunked"),
            };
        }
        State::Head
    }

    fn feed_chunked<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let State::Chunked(chunk) = &mut self.state else {
            return &[];
        };
        match chunk {
            Chunk::Size(line) => {
                let rest = match take_line(line, data, 1024) {
                    Line::Partial => return &[],
                    Line::TooLong => {
                        self.state = State::Ambiguous("a chunk-size line longer than 1 KiB");
                        return &[];
                    }
                    Line::Complete(rest) => rest,
                };
                // Chunk lines and trailers end in CRLF, as heads do: hyper reads a bare LF
                // in a trailer as an ordinary byte, so a trailer ending in `\n\r\n` would
                // end here but not there, and what follows would be read differently.
                let Some(line) = line.strip_suffix(b"\r") else {
                    self.state = State::Ambiguous("bare LF line endings");
                    return &[];
                };
                let size = std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| l.split(';').next())
                    .map(str::trim)
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                self.state = match size {
                    Some(0) => State::Chunked(Chunk::Trailer(Vec::new())),
                    Some(n) => State::Chunked(Chunk::Data(n)),
                    None => State::Ambiguous("a malformed chunk size"),
                };
                rest
            }
            Chunk::Data(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                if *left == 0 {
                    *chunk = Chunk::DataEnd(2);
                }
                &data[n as usize..]
            }
            Chunk::DataEnd(left) => {
                let n = (*left as usize).min(data.len());
                *left -= n as u8;
                if *left == 0 {
                    *chunk = Chunk::Size(Vec::new());
                }
                &data[n..]
            }
            Chunk::Trailer(line) => {
                let rest = match take_line(line, data, 8 * 1024) {
                    Line::Partial => return &[],
                    Line::TooLong => {
                        self.state = State::Ambiguous("a chunked trailer line longer than 8 KiB");
                        return &[];
                    }
                    Line::Complete(rest) => rest,
                };
                match line.as_slice() {
                    b"\r" => self.state = State::Head,
                    [.., b'\r'] => line.clear(),
                    _ => {
                        self.state = State::Ambiguous("bare LF line endings");
                        return &[];
                    }
                }
                rest
            }
        }
    }
}

/// The largest `Content-Length` hyper represents (it keeps the two values above for its own
/// use and answers larger ones with 431 itself).
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// A `Content-Length` value as hyper reads it: ASCII digits only (no sign, no list), any
/// number of leading zeros. `None` if it is not digits or does not fit in a `u64`.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// Where [`take_line`] got to.
enum Line<'a> {
    /// No line end yet; everything was taken.
    Partial,
    /// The line grew past its cap.
    TooLong,
    /// `line` holds a whole line (without its LF); the rest of the input follows.
    Complete(&'a [u8]),
}

/// Appends `data` to `line` up to the first LF. A line longer than `cap` is too long however
/// it arrives (whole or in pieces), so the verdict does not depend on how reads split it.
fn take_line<'a>(line: &mut Vec<u8>, data: &'a [u8], cap: usize) -> Line<'a> {
    match data.iter().position(|b| *b == b'\n') {
        Some(nl) => {
            line.extend_from_slice(&data[..nl]);
            if line.len() > cap {
                return Line::TooLong;
            }
            Line::Complete(&data[nl + 1..])
        }
        None => {
            line.extend_from_slice(data);
            if line.len() > cap {
                Line::TooLong
            } else {
                Line::Partial
            }
        }
    }
}

/// The end of a request head (just past its empty line) if `buf` holds one: an LF
/// followed by an empty line ending in LF or CRLF, searched from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict_of(stream: &[u8], split: usize) -> Verdict {
        let mut i = Inspector::new(16 * 1024, 64);
        for part in stream.chunks(split.max(1)) {
            i.feed(part);
        }
        i.verdict()
    }

    fn all_splits(stream: &[u8]) -> Verdict {
        let first = verdict_of(stream, stream.len());
        for split in 1..stream.len() {
            assert_eq!(verdict_of(stream, split), first, "split {split}");
        }
        first
    }

    const OK: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn clean_keep_alive_streams_are_followed_across_any_split() {
        assert_eq!(all_splits(OK), Verdict::Clean);
    }

    #[test]
    fn both_lengths_are_ambiguous_in_either_order() {
        let a =
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let b =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n";
        assert_eq!(
            all_splits(a),
            Verdict::Ambiguous("both Content-Length and Transfer-Encoding")
        );
        assert_eq!(
            all_splits(b),
            Verdict::Ambiguous("both Content-Length and Transfer-Encoding")
        );
    }

    #[test]
    fn duplicate_or_invalid_lengths_are_ambiguous() {
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(
            all_splits(dup),
            Verdict::Ambiguous("more than one Content-Length")
        );
        let neg = b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(
            all_splits(neg),
            Verdict::Ambiguous("an invalid Content-Length")
        );
        let plus = b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd";
        assert_eq!(
            all_splits(plus),
            Verdict::Ambiguous("an invalid Content-Length")
        );
        let list = b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\nabcd";
        assert_eq!(
            all_splits(list),
            Verdict::Ambiguous("an invalid Content-Length")
        );
    }

    #[test]
    fn chunked_named_twice_is_ambiguous_in_one_line_or_two() {
        let why = Verdict::Ambiguous("chunked named more than once in Transfer-Encoding");
        let one_line = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(all_splits(one_line), why);
        let two_lines = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(all_splits(two_lines), why);
        let once = b"POST / HTTP/1.1\r\nTransfer-Encoding:  chunked \r\n\r\n0\r\n\r\n";
        assert_eq!(all_splits(once), Verdict::Clean);
    }

    #[test]
    fn a_content_length_beyond_any_body_is_too_large_not_ambiguous() {
        for len in [
            "18446744073709551615",
            "18446744073709551614",
            "18446744073709551616",
            "99999999999999999999999999",
        ] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {len}\r\n\r\n");
            assert_eq!(all_splits(head.as_bytes()), Verdict::TooLarge, "{len}");
        }
        // The largest hyper takes is an ordinary (if hopeless) body; leading zeros are fine.
        let max = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551613\r\n\r\n";
        assert_eq!(all_splits(max), Verdict::Clean);
        let zeros = b"POST / HTTP/1.1\r\nContent-Length: 0000000000000000000000002\r\n\r\nab";
        assert_eq!(all_splits(zeros), Verdict::Clean);
    }

    #[test]
    fn a_smuggled_request_in_a_body_is_found_where_it_really_starts() {
        // The second request hides in the first one's body: it is body, not a request.
        let hidden = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        let mut stream = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            hidden.len()
        )
        .into_bytes();
        stream.extend_from_slice(hidden);
        assert_eq!(all_splits(&stream), Verdict::Clean);
        // After the body, the next request is inspected.
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(
            all_splits(&stream),
            Verdict::Ambiguous("a Transfer-Encoding that does not end in chunked")
        );
    }

    #[test]
    fn chunked_bodies_are_skipped_to_their_end() {
        let mut stream =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec();
        stream.extend_from_slice(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(
            all_splits(&stream),
            Verdict::Ambiguous("both Content-Length and Transfer-Encoding")
        );
    }

    #[test]
    fn bare_lf_heads_are_refused_so_no_header_hides_behind_them() {
        let sneaky = b"POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\n\n";
        assert_eq!(
            all_splits(sneaky),
            Verdict::Ambiguous("bare LF line endings")
        );
        let mixed = b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            all_splits(mixed),
            Verdict::Ambiguous("bare LF line endings")
        );
    }

    #[test]
    fn bare_lf_in_chunk_lines_and_trailers_is_refused() {
        // hyper would read `X: a\n\r\n` plus the next head as one long trailer and the
        // second request's body as a request of its own.
        let body = br#"{"bulkDelAttendInfo":[{"number":"+1"}]}"#;
        let mut trailer =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n".to_vec();
        trailer.extend_from_slice(
            format!("POST /y HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        );
        trailer.extend_from_slice(body);
        assert_eq!(
            all_splits(&trailer),
            Verdict::Ambiguous("bare LF line endings")
        );
        let size = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n";
        assert_eq!(all_splits(size), Verdict::Ambiguous("bare LF line endings"));
        let end = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n";
        assert_eq!(all_splits(end), Verdict::Ambiguous("bare LF line endings"));
    }

    #[test]
    fn what_cannot_be_followed_fails_closed() {
        assert_eq!(
            all_splits(b"\x16\x03\x01 not http at all\r\n\r\n"),
            Verdict::Ambiguous("a request head that cannot be parsed")
        );
        let mut i = Inspector::new(64, 64);
        i.feed(&[b'a'; 1000]);
        assert_eq!(
            i.verdict(),
            Verdict::Ambiguous("a request head larger than listen.max_header_bytes")
        );
        let bad_chunk = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(
            all_splits(bad_chunk),
            Verdict::Ambiguous("a malformed chunk size")
        );
    }

    #[test]
    fn heads_with_more_fields_than_the_stack_buffer_are_inspected() {
        let mut head = String::from("POST / HTTP/1.1\r\n");
        for n in 0..200 {
            head.push_str(&format!("X-{n}: v\r\n"));
        }
        head.push_str("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut i = Inspector::new(64 * 1024, 1024);
        i.feed(head.as_bytes());
        assert_eq!(
            i.verdict(),
            Verdict::Ambiguous("both Content-Length and Transfer-Encoding")
        );
    }
}
