//! What the targets share: the input written as a file in a fresh folder, since the product
//! reads these formats from disk (and names the file in its errors).
use std::path::Path;

/// Writes `data` to `DIR/name` in a new temporary folder and hands the folder and the file to
/// `read`; does nothing when the folder cannot be made (not a finding).
pub fn as_file(name: &str, data: &[u8], read: impl FnOnce(&Path, &Path)) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = dir.path().join(name);
    if std::fs::write(&p, data).is_ok() {
        read(dir.path(), &p);
    }
}
