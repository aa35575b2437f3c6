//! Writing outputs safely: check the destination before sampling, write to
//! a temporary file and rename it, so a reader never sees half a file.
//!
//! `-` means standard output, and a destination that exists and is not a
//! regular file (`/dev/stdout`, a FIFO, a terminal) is written in place:
//! renaming over it would replace the device node or symlink with a file.
//! A symlink to a regular file is followed, so the file is replaced and the
//! link kept. Temporary files are created exclusively (`O_EXCL`), so a name
//! planted in a shared directory such as /tmp is never followed.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where an output goes.
enum Destination {
    /// Our standard output (`-o -`).
    Stdout,
    /// An existing non-regular file (device, FIFO, socket): written in place.
    InPlace(PathBuf),
    /// A regular file (new or existing): temporary file, then rename.
    Atomic(PathBuf),
}

fn destination(path: &Path) -> Destination {
    if path.as_os_str() == "-" {
        return Destination::Stdout;
    }
    // `metadata` follows symlinks: `/dev/stdout` is a character device or a pipe.
    match std::fs::metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if t.is_char_device() || t.is_fifo() || t.is_socket() || t.is_block_device() {
                return Destination::InPlace(path.to_path_buf());
            }
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|l| l.file_type().is_symlink());
            if is_link {
                if let Ok(real) = std::fs::canonicalize(path) {
                    return Destination::Atomic(real);
                }
            }
            Destination::Atomic(path.to_path_buf())
        }
        Err(_) => Destination::Atomic(path.to_path_buf()),
    }
}

/// How an output is named in messages.
pub fn describe(path: &Path) -> String {
    match destination(path) {
        Destination::Stdout => "standard output".into(),
        _ => path.display().to_string(),
    }
}

/// Fail early (before any sampling) when the output cannot be written.
pub fn check_writable(path: &Path) -> Result<()> {
    let path = match destination(path) {
        Destination::Stdout => return Ok(()),
        Destination::InPlace(p) => {
            // Opening a FIFO would block until a reader comes: ask access(2).
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .context("the output path contains a NUL byte")?;
            // SAFETY: access(2) on a NUL-terminated path; no memory is written.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(e).with_context(|| format!("cannot write {}", p.display()));
            }
            return Ok(());
        }
        Destination::Atomic(p) => p,
    };
    let dir = parent_dir(&path);
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        anyhow::bail!("cannot write {}: it is a directory", path.display());
    }
    let (probe, file) = create_temp(&path).with_context(|| {
        format!(
            "cannot write {}: cannot create a file in {}",
            path.display(),
            dir.display()
        )
    })?;
    drop(file);
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new temporary file next to `path`, created exclusively: a file or
/// symlink already there under that name is never opened.
fn create_temp(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let mut last = None;
    for attempt in 0..100u32 {
        let tmp = parent_dir(path).join(format!(
            ".{name}.pyrometer-{}-{attempt}.tmp",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary file name")))
}

/// Write atomically: render into a temporary file next to `path`, sync, rename.
/// Standard output and non-regular files are written in place.
pub fn write_atomic(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    match destination(path) {
        Destination::Stdout => {
            let out = std::io::stdout();
            write_stream(&mut out.lock(), render).context("cannot write to standard output")
        }
        Destination::InPlace(p) => {
            let mut file = OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("cannot write {}", p.display()))?;
            write_stream(&mut file, render).with_context(|| format!("cannot write {}", p.display()))
        }
        Destination::Atomic(p) => write_renamed(&p, render),
    }
}

/// From now on a write to a pipe whose reader went away fails (EPIPE)
/// instead of killing pyrometer: for the end of a recording, whose exit code
/// and rescued samples matter more than a summary nobody reads. Called
/// after the launched command was started (it would inherit the setting).
pub fn ignore_sigpipe() {
    // SAFETY: changing this process's SIGPIPE disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Write to a stream that may be a pipe whose reader went away: with
/// SIGPIPE ignored meanwhile, that is an error (and the samples can still be
/// saved elsewhere) instead of a silent death.
fn write_stream(
    w: &mut dyn Write,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // SAFETY: changing this process's SIGPIPE disposition; restored below.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let result = (|| {
        let mut buffered = std::io::BufWriter::new(&mut *w);
        render(&mut buffered)?;
        buffered.flush()
    })();
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, previous) };
    result.map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::io::Error::new(e.kind(), "the reader closed the pipe before the end")
        } else {
            e
        }
    })
}

fn write_renamed(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp = None;
    let result = (|| -> std::io::Result<()> {
        let (name, file) = create_temp(path)?;
        tmp = Some(name.clone());
        let mut w = std::io::BufWriter::new(file);
        render(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&name, path)
    })();
    if let Err(e) = result {
        if let Some(t) = tmp {
            let _ = std::fs::remove_file(t);
        }
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Save into a new file `dir/STEM.txt` (or `dir/STEM-N.txt`), created
/// exclusively so that nothing planted in a shared directory is followed;
/// for the rescue copy of samples when the real output failed.
pub fn write_new(
    dir: &Path,
    stem: &str,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<PathBuf> {
    let mut opened = None;
    for n in 0..100u32 {
        let name = if n == 0 {
            format!("{stem}.txt")
        } else {
            format!("{stem}-{n}.txt")
        };
        let path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                opened = Some((path, f));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot write in {}", dir.display())),
        }
    }
    let Some((path, file)) = opened else {
        anyhow::bail!("no free file name for {stem} in {}", dir.display());
    };
    let result = (|| {
        let mut w = std::io::BufWriter::new(file);
        render(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(path)
}

/// Strip terminal control sequences from target-controlled text: control
/// characters (C0, DEL, C1), and the bidirectional overrides that would
/// make the terminal show text in another order than it is.
pub fn terminal_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pyrometer-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_symlink_to_a_file_is_followed_and_kept() {
        let d = scratch("link");
        let real = d.join("real.txt");
        std::fs::write(&real, "old").unwrap();
        let link = d.join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, |w| w.write_all(b"new")).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_planted_temporary_name_is_not_followed() {
        let d = scratch("planted");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let out = d.join("out.txt");
        let planted = d.join(format!(".out.txt.pyrometer-{}-0.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&out, |w| w.write_all(b"profile")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "profile");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dev_null_is_written_in_place() {
        let null = Path::new("/dev/null");
        check_writable(null).unwrap();
        write_atomic(null, |w| w.write_all(b"x")).unwrap();
        assert!(std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(terminal_safe("a\x1b[31mb\nc\u{9b}d"), "a?[31mb?c?d");
        assert_eq!(terminal_safe("x\u{202e}y\u{2066}z"), "x?y?z");
        assert_eq!(terminal_safe("日本語 é"), "日本語 é");
    }
}
