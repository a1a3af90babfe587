//! Images: `host` (or none) runs on the host's filesystem; an absolute path
//! names a root filesystem directory, or a .tar / .tar.gz of one, which is
//! unpacked once into the agent's image cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::StartError;

/// Mount points every root filesystem needs.
const MOUNT_POINTS: [&str; 3] = ["proc", "dev", "tmp"];

fn pull_error(image: &str, why: impl std::fmt::Display) -> StartError {
    StartError { reason: "ErrImagePull".into(), message: format!("image {image:?}: {why}") }
}

/// The root filesystem for `image`: None for the host's.
pub fn resolve(image: Option<&str>, cache: &Path) -> Result<Option<PathBuf>, StartError> {
    let image = match image.map(str::trim) {
        None | Some("") | Some("host") => return Ok(None),
        Some(image) => image,
    };
    let path = Path::new(image);
    if !path.is_absolute() {
        return Err(pull_error(
            image,
            "not an absolute path (images are `host`, a root filesystem directory, or a .tar/.tar.gz of one)",
        ));
    }
    let root = if path.is_dir() {
        path.to_path_buf()
    } else if path.is_file() && [".tar", ".tar.gz", ".tgz"].iter().any(|s| image.ends_with(s)) {
        unpack(image, path, cache)?
    } else if path.exists() {
        return Err(pull_error(image, "neither a directory nor a .tar/.tar.gz file"));
    } else {
        return Err(pull_error(image, "no such directory or file"));
    };
    for dir in MOUNT_POINTS {
        let at = root.join(dir);
        if !at.is_dir() {
            std::fs::create_dir_all(&at).map_err(|e| pull_error(image, format!("cannot create /{dir} in it: {e}")))?;
        }
    }
    Ok(Some(root))
}

/// Unpacks a tarball into the cache, once per (path, size, modification time).
fn unpack(image: &str, path: &Path, cache: &Path) -> Result<PathBuf, StartError> {
    let meta = std::fs::metadata(path).map_err(|e| pull_error(image, e))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (image, meta.len(), meta.modified().ok()).hash(&mut hasher);
    let target = cache.join(format!("{:016x}", hasher.finish()));
    if target.is_dir() {
        return Ok(target);
    }
    let partial = cache.join(format!("{:016x}.partial-{}", hasher.finish(), std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| pull_error(image, format!("cannot create the image cache: {e}")))?;
    let output = Command::new("tar")
        .arg("-xf")
        .arg(path)
        .arg("-C")
        .arg(&partial)
        .output()
        .map_err(|e| pull_error(image, format!("cannot run tar: {e}")))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(pull_error(image, format!("cannot unpack: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    std::fs::rename(&partial, &target).map_err(|e| pull_error(image, e))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_and_tarballs_resolve_and_the_rest_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        assert_eq!(resolve(None, &cache), Ok(None));
        assert_eq!(resolve(Some("host"), &cache), Ok(None));
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::write(root.join("bin/hello"), "hi").expect("write");
        assert_eq!(resolve(Some(root.to_str().expect("utf-8")), &cache), Ok(Some(root.clone())));
        assert!(root.join("proc").is_dir(), "mount points are made");

        let tarball = dir.path().join("root.tar.gz");
        let status = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&root).arg(".").status();
        assert!(status.is_ok_and(|s| s.success()));
        let unpacked = resolve(Some(tarball.to_str().expect("utf-8")), &cache).expect("unpacked").expect("a root");
        assert_eq!(std::fs::read_to_string(unpacked.join("bin/hello")).expect("read"), "hi");
        let again = resolve(Some(tarball.to_str().expect("utf-8")), &cache).expect("cached").expect("a root");
        assert_eq!(again, unpacked, "unpacked once");

        for bad in ["nginx:latest", "/no/such/dir", "relative/path"] {
            let e = resolve(Some(bad), &cache).expect_err(bad);
            assert_eq!(e.reason, "ErrImagePull", "{bad}");
        }
    }
}
