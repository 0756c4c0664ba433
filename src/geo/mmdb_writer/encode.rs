//! The data-section encoding: control bytes (type and size) and the values
//! themselves, in the MMDB 2.0 format.

use super::{MmdbValue, MmdbWriteError};

/// Write a control byte (and extended type byte and size bytes).
fn control(type_num: u8, size: usize, out: &mut Vec<u8>) -> Result<(), MmdbWriteError> {
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else if size < 65821 + (1 << 24) {
        (31, ((size - 65821) as u32).to_be_bytes()[1..].to_vec())
    } else {
        return Err(MmdbWriteError::TooLarge(format!("size {size}")));
    };
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra);
    Ok(())
}

fn encode_uint(type_num: u8, v: u64, out: &mut Vec<u8>) -> Result<(), MmdbWriteError> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(type_num, 8 - skip, out)?;
    out.extend_from_slice(&bytes[skip..]);
    Ok(())
}

/// Encode a value of the data section (no pointers).
pub(super) fn encode(v: &MmdbValue, out: &mut Vec<u8>) -> Result<(), MmdbWriteError> {
    match v {
        MmdbValue::String(s) => {
            control(2, s.len(), out)?;
            out.extend_from_slice(s.as_bytes());
        }
        MmdbValue::Double(d) => {
            control(3, 8, out)?;
            out.extend_from_slice(&d.to_be_bytes());
        }
        MmdbValue::Uint16(n) => encode_uint(5, u64::from(*n), out)?,
        MmdbValue::Uint32(n) => encode_uint(6, u64::from(*n), out)?,
        MmdbValue::Map(pairs) => {
            control(7, pairs.len(), out)?;
            for (k, v) in pairs {
                control(2, k.len(), out)?;
                out.extend_from_slice(k.as_bytes());
                encode(v, out)?;
            }
        }
        MmdbValue::Int32(n) => {
            if *n >= 0 {
                encode_uint(8, *n as u64, out)?;
            } else {
                control(8, 4, out)?;
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        MmdbValue::Uint64(n) => encode_uint(9, *n, out)?,
        MmdbValue::Array(items) => {
            control(11, items.len(), out)?;
            for item in items {
                encode(item, out)?;
            }
        }
        MmdbValue::Bool(b) => control(14, usize::from(*b), out)?,
        MmdbValue::Float(f) => {
            control(15, 4, out)?;
            out.extend_from_slice(&f.to_be_bytes());
        }
    }
    Ok(())
}
