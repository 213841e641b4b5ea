//! The event log written by `zt-trace record` and read by `zt-trace replay`.
//!
//! Layout: the magic `ZTREC\0\x01\n`, a u32 (little endian) length and a JSON
//! [`RecordHeader`], then records: a type byte, a u32 length, the bytes.
//! Type 1 is a raw ring-buffer record exactly as the kernel wrote it (decoded
//! by [`crate::raw::decode`] on replay, so the decoder is exercised too);
//! type 2 is a JSON [`ProcessInfo`] the agent read from /proc.

use serde::{Deserialize, Serialize};
use span_core::ProcessInfo;
use std::io::{self, BufReader, BufWriter, Read, Write};

pub const MAGIC: &[u8; 8] = b"ZTREC\0\x01\n";
/// Version of the raw record layout (zt_events.h). Logs of another version
/// are refused rather than misread.
/// 5: details sent once (thread and connection prefixes) and `task`;
/// 4: self-contained records with `task`; 3: without it.
pub const FORMAT_VERSION: u32 = 5;
/// Oldest version still read (formats 3 and 4: [`crate::raw::legacy`]).
pub const OLDEST_VERSION: u32 = 3;
const T_RAW: u8 = 1;
const T_PROCESS: u8 = 2;
/// Largest record accepted when reading (a corrupt length never allocates more).
const MAX_RECORD: usize = 1 << 20;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordHeader {
    pub version: u32,
    /// Unix-epoch ns minus monotonic ns when recording started.
    pub wall_clock_offset_ns: i64,
    pub capture_bytes: u32,
    pub host_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Raw(Vec<u8>),
    Process(ProcessInfo),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("not a zt-trace event log (bad magic)")]
    BadMagic,
    #[error("corrupt event log: {0}")]
    Corrupt(String),
    #[error("event log format version {0} is not supported (this zt-trace reads versions {OLDEST_VERSION} to {FORMAT_VERSION}); replay it with the zt-trace that recorded it")]
    Version(u32),
}

pub struct RecordWriter<W: Write> {
    w: BufWriter<W>,
    pub records: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(inner: W, header: &RecordHeader) -> Result<Self, RecordError> {
        let mut w = BufWriter::with_capacity(1 << 20, inner);
        w.write_all(MAGIC)?;
        let h = serde_json::to_vec(header).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        w.write_all(&(h.len() as u32).to_le_bytes())?;
        w.write_all(&h)?;
        Ok(RecordWriter { w, records: 0 })
    }

    fn put(&mut self, t: u8, bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(&[t])?;
        self.w.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.w.write_all(bytes)?;
        self.records += 1;
        Ok(())
    }

    pub fn raw(&mut self, rec: &[u8]) -> io::Result<()> {
        self.put(T_RAW, rec)
    }

    pub fn process(&mut self, p: &ProcessInfo) -> io::Result<()> {
        let b = serde_json::to_vec(p).map_err(io::Error::other)?;
        self.put(T_PROCESS, &b)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

pub struct RecordReader<R: Read> {
    r: BufReader<R>,
    pub header: RecordHeader,
}

impl<R: Read> RecordReader<R> {
    pub fn new(inner: R) -> Result<Self, RecordError> {
        let mut r = BufReader::with_capacity(1 << 20, inner);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)
            .map_err(|_| RecordError::BadMagic)?;
        if &magic != MAGIC {
            return Err(RecordError::BadMagic);
        }
        let len = read_u32(&mut r)? as usize;
        if len > MAX_RECORD {
            return Err(RecordError::Corrupt(format!("header length {len}")));
        }
        let mut h = vec![0; len];
        r.read_exact(&mut h)?;
        let header: RecordHeader =
            serde_json::from_slice(&h).map_err(|e| RecordError::Corrupt(format!("header: {e}")))?;
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&header.version) {
            return Err(RecordError::Version(header.version));
        }
        Ok(RecordReader { r, header })
    }

    /// Next record; `Ok(None)` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        let mut t = [0u8; 1];
        match self.r.read(&mut t) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let len = read_u32(&mut self.r)? as usize;
        if len > MAX_RECORD {
            return Err(RecordError::Corrupt(format!("record length {len}")));
        }
        let mut b = vec![0; len];
        self.r
            .read_exact(&mut b)
            .map_err(|_| RecordError::Corrupt("truncated record".into()))?;
        match t[0] {
            T_RAW => Ok(Some(Record::Raw(b))),
            T_PROCESS => serde_json::from_slice(&b)
                .map(|p| Some(Record::Process(p)))
                .map_err(|e| RecordError::Corrupt(format!("process record: {e}"))),
            t => Err(RecordError::Corrupt(format!("record type {t}"))),
        }
    }
}

fn read_u32(r: &mut impl Read) -> Result<u32, RecordError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)
        .map_err(|_| RecordError::Corrupt("truncated length".into()))?;
    Ok(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let header = RecordHeader {
            version: FORMAT_VERSION,
            wall_clock_offset_ns: 123,
            capture_bytes: 4096,
            host_name: Some("h".into()),
        };
        let mut buf = Vec::new();
        {
            let mut w = RecordWriter::new(&mut buf, &header).unwrap();
            w.raw(&[1, 2, 3]).unwrap();
            w.process(&ProcessInfo {
                pid: 9,
                comm: "x".into(),
                ..Default::default()
            })
            .unwrap();
            w.flush().unwrap();
        }
        let mut r = RecordReader::new(&buf[..]).unwrap();
        assert_eq!(r.header, header);
        assert_eq!(r.next_record().unwrap(), Some(Record::Raw(vec![1, 2, 3])));
        assert!(matches!(r.next_record().unwrap(), Some(Record::Process(p)) if p.pid == 9));
        assert_eq!(r.next_record().unwrap(), None);

        let mut r = RecordReader::new(&buf[..buf.len() - 2]).unwrap();
        r.next_record().unwrap();
        assert!(matches!(r.next_record(), Err(RecordError::Corrupt(_))));
        assert!(matches!(
            RecordReader::new(&b"nope"[..]),
            Err(RecordError::BadMagic)
        ));
    }
}
