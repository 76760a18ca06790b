//! Files read whole only when they are regular files of a bounded size, and files written
//! to a temporary name beside their destination and renamed into place, so that a crash
//! never leaves a half-written file under the real name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::limits::human;

/// Reads a whole file that must be a regular file of at most `max` bytes: a FIFO, a device
/// (`/dev/zero`) or a folder is refused before it is opened, so nothing blocks or reads
/// without end. `what` says what the file is ("scheduler config").
///
/// ```
/// use std::path::Path;
/// let e = ddpm_io::files::read_regular_file(Path::new("/dev/zero"), 1 << 20, "config").unwrap_err();
/// assert!(e.to_string().contains("not a regular file"));
/// ```
pub fn read_regular_file(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path, what)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > max {
        return Err(Error::bad_file(path, format!("{what}: found {len} bytes, expected at most {max} ({})", human(max))));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // A file that grows while it is read is cut at the limit and refused.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::bad_file(path, format!("{what}: more than {max} bytes")));
    }
    Ok(bytes)
}

/// [`read_regular_file`] as UTF-8 text.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("bad.json");
/// std::fs::write(&p, [0xff, 0xfe])?;
/// let e = ddpm_io::files::read_regular_text(&p, 1024, "config").unwrap_err();
/// assert!(e.to_string().contains("not UTF-8"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_regular_text(path: &Path, max: u64, what: &str) -> Result<String> {
    let bytes = read_regular_file(path, max, what)?;
    String::from_utf8(bytes).map_err(|e| Error::bad_file(path, format!("{what}: not UTF-8 text ({e})")))
}

/// Opens a file for streaming only if it is a regular file (a FIFO would block the open).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let e = ddpm_io::files::open_regular(dir.path(), "model").unwrap_err();
/// assert!(e.to_string().contains("a folder"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_regular(path: &Path, what: &str) -> Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a folder" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(Error::bad_file(path, format!("{what}: found {kind}, expected a regular file")));
    }
    std::fs::File::open(path).map_err(|e| Error::io(path, e))
}

/// The folder a new file at `path` goes in ("." for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file beside `path`, named `.NAME.XXXX.tmp`: rename it over `path` with
/// [`tempfile::NamedTempFile::persist`] once it is complete. Dropped unpersisted, it is
/// removed.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let target = dir.path().join("model.onnx");
/// let mut tmp = ddpm_io::files::temp_file_beside(&target)?;
/// tmp.write_all(b"bytes")?;
/// tmp.persist(&target)?;
/// assert_eq!(std::fs::read(&target)?, b"bytes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_of(path);
    tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().map_or("out".into(), |n| n.to_string_lossy())))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))
}

/// Writes a file atomically: `write` fills a temporary file in the same folder, which is
/// synced, given mode 0644 (what we write is for the user to share) and renamed over
/// `path`. On any error `path` is untouched.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("out.txt");
/// std::fs::write(&path, "old")?;
/// let failed = ddpm_io::files::write_atomically(&path, |_| Err(std::io::Error::other("no")));
/// assert!(failed.is_err());
/// assert_eq!(std::fs::read_to_string(&path)?, "old");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomically(path: impl AsRef<Path>, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let path = path.as_ref();
    let mut tmp = temp_file_beside(path)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // tempfile creates 0600 files.
    set_mode(tmp.path(), 0o644).map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Fills a new folder atomically: `fill` writes into a temporary folder beside `dir`,
/// which is given mode 0755 and renamed to `dir` when complete. `dir` must not exist.
///
/// ```
/// let parent = tempfile::tempdir()?;
/// let dir = parent.path().join("run");
/// ddpm_io::files::create_dir_atomically(&dir, |tmp| {
///     std::fs::write(tmp.join("a.txt"), "a").map_err(|e| ddpm_io::Error::io(tmp, e))
/// })?;
/// assert!(dir.join("a.txt").is_file());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create_dir_atomically<E: From<Error>>(dir: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    let parent = parent_of(dir);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", dir.file_name().map_or("out".into(), |n| n.to_string_lossy())))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    fill(tmp.path())?;
    set_mode(tmp.path(), 0o755).map_err(|e| Error::io(dir, e))?;
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        Error::io(dir, e).into()
    })
}

/// Sets Unix permission bits (no-op elsewhere).
///
/// ```
/// let f = tempfile::NamedTempFile::new()?;
/// ddpm_io::files::set_mode(f.path(), 0o644)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_not_read() {
        let e = read_regular_file(Path::new("/dev/zero"), 1 << 20, "config").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular_file(dir.path(), 1 << 20, "config").unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
    }
}
