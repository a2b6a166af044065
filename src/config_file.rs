//! Reading the small configuration files the flags name (names, secret, web config, TLS).

use std::io::Read;
use std::path::Path;

/// Largest configuration file read, in bytes.
pub const MAX_BYTES: u64 = 4 << 20;

/// Reads a configuration file of at most [`MAX_BYTES`].
///
/// Only regular files are read, so a device or a pipe given by mistake cannot fill memory or
/// block the start. Errors say why, without the file's content.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut content = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(|e| e.to_string())?;
    if content.len() as u64 > MAX_BYTES {
        return Err(format!("larger than {} MiB", MAX_BYTES >> 20));
    }
    Ok(content)
}

/// Reads a configuration file as UTF-8 text; see [`read`].
pub fn read_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read(path)?).map_err(|_| "not valid UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_missing_files_are_refused() {
        assert_eq!(
            read(Path::new("/dev/zero")),
            Err("not a regular file".into())
        );
        assert_eq!(read(Path::new("/")), Err("not a regular file".into()));
        assert!(read(Path::new("/nonexistent/file")).is_err());
    }

    #[test]
    fn oversized_and_binary_files_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_BYTES as usize + 1]).expect("write");
        assert_eq!(read(&big), Err("larger than 4 MiB".into()));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe]).expect("write");
        assert_eq!(read_text(&binary), Err("not valid UTF-8 text".into()));
    }
}
