//! Where the parser's bytes come from: a slice already in memory, or a `std::io::Read`.

use std::io::Read;

/// Why a read came back short.
pub(crate) enum ShortRead {
    /// The input ended; `available_bytes` is how many bytes from the start of the file exist.
    EndOfInput {
        available_bytes: u64,
    },
    Io(std::io::Error),
}

/// A forward-only byte source that knows its absolute position in the file.
pub(crate) trait ByteSource {
    /// Absolute offset of the next byte to be read.
    fn position(&self) -> u64;

    /// How many bytes are certainly readable from the current position, when that is known
    /// without reading them (a slice knows; a stream does not).
    fn known_available_from_here(&self) -> Option<u64>;

    /// Reads exactly `length` bytes. The returned slice is valid until the next call.
    fn read_bytes(&mut self, length: usize) -> Result<&[u8], ShortRead>;
}

/// A byte slice holding the whole file or a prefix of it.
pub(crate) struct SliceSource<'bytes> {
    bytes: &'bytes [u8],
    position: usize,
}

impl<'bytes> SliceSource<'bytes> {
    pub(crate) fn new(bytes: &'bytes [u8]) -> Self {
        SliceSource { bytes, position: 0 }
    }
}

impl ByteSource for SliceSource<'_> {
    fn position(&self) -> u64 {
        self.position as u64
    }

    fn known_available_from_here(&self) -> Option<u64> {
        Some((self.bytes.len() - self.position) as u64)
    }

    fn read_bytes(&mut self, length: usize) -> Result<&[u8], ShortRead> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(ShortRead::EndOfInput {
                available_bytes: self.bytes.len() as u64,
            })?;
        let bytes = &self.bytes[self.position..end];
        self.position = end;
        Ok(bytes)
    }
}

/// A stream. Reads go through an internal buffer that grows only as bytes actually arrive, so a
/// hostile length field cannot make the reader allocate more than the stream delivers (plus one
/// chunk).
pub(crate) struct ReaderSource<R> {
    reader: R,
    position: u64,
    buffer: Vec<u8>,
}

/// How much the buffer grows per step while reading a long field from a stream.
const STREAM_READ_CHUNK_BYTES: usize = 1 << 20;

impl<R: Read> ReaderSource<R> {
    pub(crate) fn new(reader: R) -> Self {
        ReaderSource {
            reader,
            position: 0,
            buffer: Vec::new(),
        }
    }
}

impl<R: Read> ByteSource for ReaderSource<R> {
    fn position(&self) -> u64 {
        self.position
    }

    fn known_available_from_here(&self) -> Option<u64> {
        None
    }

    fn read_bytes(&mut self, length: usize) -> Result<&[u8], ShortRead> {
        self.buffer.clear();
        while self.buffer.len() < length {
            let chunk_start = self.buffer.len();
            let chunk_length = (length - chunk_start).min(STREAM_READ_CHUNK_BYTES);
            self.buffer.resize(chunk_start + chunk_length, 0);
            let mut filled = 0;
            while filled < chunk_length {
                let target = &mut self.buffer[chunk_start + filled..chunk_start + chunk_length];
                match self.reader.read(target) {
                    Ok(0) => {
                        let received = (chunk_start + filled) as u64;
                        return Err(ShortRead::EndOfInput {
                            available_bytes: self.position.saturating_add(received),
                        });
                    }
                    Ok(read_count) => filled += read_count,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(ShortRead::Io(error)),
                }
            }
        }
        self.position = self.position.saturating_add(length as u64);
        Ok(&self.buffer[..length])
    }
}
