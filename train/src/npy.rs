//! Minimal `.npy` (NumPy format 1.0–3.0) reader and writer for float32, C-order arrays: how
//! tensors travel to and from the Python reference tools (onnxruntime, scipy) in parity tests
//! and debugging dumps. Anything else (other dtypes, Fortran order) is refused, not converted.
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `data` with `shape` as a little-endian float32 C-order `.npy`, atomically.
pub fn write_npy(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    let numel: usize = shape.iter().product();
    if numel != data.len() {
        return Err(Error::data(
            path,
            format!("shape {shape:?} holds {numel} values, got {}", data.len()),
        ));
    }
    Ok(write_atomic(path, &encode(data, shape))?)
}

/// Reads a float32 C-order `.npy`; returns the values and the shape.
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes).map_err(|msg| Error::Parse {
        path: path.to_path_buf(),
        msg,
    })
}

/// The bytes of a version 1.0 file. The header is padded so the data starts at a multiple of
/// 64 bytes, as NumPy itself does (lets readers memory-map aligned data).
pub fn encode(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // Header length fits u16 in version 1.0: a float32 header with any sane shape is < 200 bytes.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Parses `.npy` bytes; the error message says what is wrong (the caller adds the path).
pub fn decode(bytes: &[u8]) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    if !matches!(descr.trim_matches(|c| c == '\'' || c == '"'), "<f4" | "=f4") {
        return Err(format!(
            "dtype {descr} is not little-endian float32 ('<f4')"
        ));
    }
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    if fortran != "False" {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape = parse_shape(dict_value(header, "shape").ok_or("header has no 'shape'")?)?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let body = &bytes[start + header_len..];
    if body.len() != 4 * numel {
        return Err(format!(
            "shape {shape:?} needs {} data bytes, file has {}",
            4 * numel,
            body.len()
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((data, shape))
}

/// The raw text of `'key': value` in NumPy's header dict; a tuple value keeps its parentheses.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

fn parse_shape(s: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("shape {s} is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad dimension `{d}` in shape {s}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy(&p, &data, &[2, 3, 4]).unwrap();
        let (back, shape) = read_npy(&p).unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(back, data);
    }

    #[test]
    fn header_matches_numpy_layout() {
        let bytes = encode(&[1.0, 2.0], &[2]);
        // The 58-byte dict plus the 10-byte preamble pads to 128: data starts 64-byte aligned
        // and the header ends with a newline, as NumPy writes it.
        assert_eq!(bytes.len(), 128 + 8);
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 118);
        assert_eq!(bytes[127], b'\n');
        let header = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }   "));
        assert_eq!(&bytes[128..132], &1.0f32.to_le_bytes());
    }

    #[test]
    fn reads_scalar_and_numpy_spacing() {
        // NumPy writes a 0-d array as shape `()`.
        let mut bytes = encode(&[7.5], &[]);
        assert_eq!(decode(&bytes).unwrap(), (vec![7.5], vec![]));
        // Version 2.0 header (u32 length), double-quoted keys.
        let header = "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(1, 1)}\n";
        bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[2, 0]);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&3.0f32.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), (vec![3.0], vec![1, 1]));
    }

    #[test]
    fn refuses_wrong_dtype_order_and_length() {
        let ok = encode(&[1.0, 2.0], &[2]);
        let swap = |from: &str, to: &str| {
            let mut b = ok.clone();
            let at = b
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap();
            b.splice(at..at + from.len(), to.bytes());
            b
        };
        assert!(decode(&swap("<f4", "<f8")).unwrap_err().contains("float32"));
        assert!(
            decode(&swap("False", "True "))
                .unwrap_err()
                .contains("Fortran")
        );
        assert!(
            decode(&swap("(2,)", "(3,)"))
                .unwrap_err()
                .contains("data bytes")
        );
        assert!(decode(b"PK\x03\x04 not npy").unwrap_err().contains("magic"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npy");
        std::fs::write(&p, b"garbage").unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("bad.npy"));
        let err = write_npy(&p, &[1.0], &[2, 2]).unwrap_err().to_string();
        assert!(err.contains("bad.npy") && err.contains("4 values"), "{err}");
    }
}
