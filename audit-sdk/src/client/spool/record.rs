//! One spool record, format v2 (in the style of Vector's disk buffer v2).
//!
//! `[magic "ASP2"][payload length: u32 LE][sequence: u64 LE][CRC32C: u32 LE][payload]`.
//! The CRC32C covers magic, length, sequence and payload, so a damaged length
//! is detected instead of trusted. The sequence number counts events (one per
//! record, consecutive across segments and processes): after a damaged region
//! the next valid record says exactly how many events were lost. The magic
//! lets recovery find that next record by scanning forward, so one damaged
//! record never takes the valid records after it along.

use std::io::{self, Read};

/// First bytes of every record; also marks the format version.
pub const MAGIC: [u8; 4] = *b"ASP2";
/// Bytes before the payload.
pub const HEADER: u64 = 20;
/// Largest record payload accepted: an event is at most 256 KiB of
/// `event_data` plus bounded fields, so anything past this is damage (a
/// flipped length byte must not make recovery allocate gigabytes).
pub const MAX_RECORD_BYTES: u32 = 1024 * 1024;

/// Appends the encoded record to `out`.
pub fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 16]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the bytes at a position hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A record that passes its checksum.
    Valid { seq: u64, payload: &'a [u8] },
    /// No valid record starts here (wrong magic, zero or oversized length,
    /// checksum mismatch, or too few bytes left).
    Damaged,
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(header) = buf.get(..HEADER as usize) else {
        return Decoded::Damaged;
    };
    let (len, seq, crc) = match parse_header(header.try_into().expect("20 bytes")) {
        Some(h) => h,
        None => return Decoded::Damaged,
    };
    let Some(payload) = buf.get(HEADER as usize..HEADER as usize + len as usize) else {
        return Decoded::Damaged;
    };
    if checksum(header, payload) != crc {
        return Decoded::Damaged;
    }
    Decoded::Valid { seq, payload }
}

/// Offset (at least 1) of the first valid record after a damaged one.
pub fn resync(buf: &[u8]) -> Option<usize> {
    (1..buf.len().saturating_sub(HEADER as usize - 1))
        .filter(|i| buf[*i..].starts_with(&MAGIC))
        .find(|i| matches!(decode(&buf[*i..]), Decoded::Valid { .. }))
}

/// Reads one record from a stream: `None` at a clean end, `Some(Err(()))`
/// for damage (including a short read), `Some(Ok((seq, payload)))`.
#[allow(clippy::type_complexity)]
pub fn read(r: &mut impl Read) -> io::Result<Option<Result<(u64, Vec<u8>), ()>>> {
    let mut header = [0u8; HEADER as usize];
    match read_full(r, &mut header)? {
        0 => return Ok(None),
        n if n < header.len() => return Ok(Some(Err(()))),
        _ => {}
    }
    let Some((len, seq, crc)) = parse_header(&header) else {
        return Ok(Some(Err(())));
    };
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? < payload.len() || checksum(&header, &payload) != crc {
        return Ok(Some(Err(())));
    }
    Ok(Some(Ok((seq, payload))))
}

fn parse_header(h: &[u8; HEADER as usize]) -> Option<(u32, u64, u32)> {
    if h[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    // Zero length: zero-filled bytes must never pass as empty records.
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    Some((len, seq, crc))
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..16]), payload)
}

/// Fills as much of `buf` as the input holds; returns how much.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_any_flipped_bit_is_damage() {
        let mut buf = Vec::new();
        encode(7, b"{\"a\":1}", &mut buf);
        assert_eq!(
            decode(&buf),
            Decoded::Valid {
                seq: 7,
                payload: b"{\"a\":1}"
            }
        );
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&bad), Decoded::Damaged, "bit {bit}");
        }
        assert_eq!(
            decode(&[0u8; 64]),
            Decoded::Damaged,
            "zeros are not a record"
        );
    }

    #[test]
    fn resync_finds_the_next_valid_record() {
        let mut buf = Vec::new();
        encode(1, b"one", &mut buf);
        let second = buf.len();
        encode(2, b"two", &mut buf);
        buf[5] ^= 0xff; // the first record's length
        assert_eq!(decode(&buf), Decoded::Damaged);
        assert_eq!(resync(&buf), Some(second));
    }
}
