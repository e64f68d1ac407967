//! Files only this user may read, written so that a crash never leaves half of one.
//!
//! The data root holds the chat history, the API key and the model library's settings: it
//! is created (or tightened to) 0700, and the files with secrets or conversations in them
//! are 0600 whatever the umask says. Atomic writes go to a temporary file that is flushed
//! to disk (`fsync`) before it is renamed over the old one, and the folder is flushed after
//! the rename: without the first flush a crash soon after the rename can leave an empty
//! file under the new name (ext4's delayed allocation, XFS), without the second the rename
//! itself may be lost. On non-Unix systems the permission steps do nothing.

use std::io::Write;
use std::path::Path;

/// Owner read/write only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) if needed and makes it owner-only. A folder someone
/// else owns is left alone: changing it would fail anyway.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, PRIVATE_DIR_MODE)
}

/// Makes an existing file owner-read/write only; a missing file is not an error (SQLite's
/// `-wal` and `-shm` come and go).
pub fn restrict_file(path: &Path) -> std::io::Result<()> {
    match set_mode(path, PRIVATE_FILE_MODE) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Replaces `path` with `bytes`: a 0600 temporary file beside it, flushed, renamed over,
/// and the folder flushed. Readers see the old content or the new, never a mix.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d
        }
        None => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(name);
    let written = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        rename_durably(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Flushes a finished temporary file (a download, a copy) to disk, then renames it into
/// place and flushes the folder: the same guarantee as [`write_private_atomic`] for files
/// written by other means.
pub fn sync_and_rename(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(tmp)?
        .sync_all()?;
    rename_durably(tmp, dest)
}

fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(to.parent().filter(|d| !d.as_os_str().is_empty()))
}

/// Opens a new file for writing, 0600 from the moment it exists (no window in which the
/// umask's mode applies); an existing one is truncated and tightened.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, PRIVATE_FILE_MODE);
    let f = opts.open(path)?;
    // `mode` only applies to a file this call created.
    set_mode(path, PRIVATE_FILE_MODE)?;
    Ok(f)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(path: &Path, _mode: u32) -> std::io::Result<()> {
    std::fs::metadata(path).map(drop)
}

#[cfg(unix)]
fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

// Windows cannot open a folder as a file; NTFS journals renames itself.
#[cfg(not(unix))]
fn sync_dir(_dir: Option<&Path>) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_writes_are_private_and_replace_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("settings.json");
        write_private_atomic(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(mode(&p), 0o600);
        // An existing world-readable file is replaced by a private one.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn private_dirs_and_restricted_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        let f = root.join("x");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        restrict_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        restrict_file(&root.join("missing")).unwrap();
    }
}
