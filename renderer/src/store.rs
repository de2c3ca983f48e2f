//! The image store: rendered variants as files under one directory.
//!
//! Keys are `renders/{run_id}/{variant_id}.png`, the same key reported in the variant's
//! telemetry, so the monitor can link a result to its image. Keys that come back from
//! the outside (`GET /images/{key}`) are checked segment by segment: no `..`, no
//! absolute paths, no backslashes, only plain names, so a key can never leave the root.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is not a plain relative path inside the store.
    #[error("invalid image key {0:?}")]
    InvalidKey(String),
    /// No image under that key.
    #[error("no image {0:?}")]
    NotFound(String),
    /// Disk trouble.
    #[error("image store I/O on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A stored image: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// The store key.
    pub key: String,
    /// sha256 of the bytes written, lowercase hex.
    pub sha256: String,
}

/// A directory of images.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// Characters allowed in one key segment. Ids are UUIDs or short slugs; anything else
/// is refused rather than escaped, so a key is also a safe URL path.
fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 128
        && segment != "."
        && segment != ".."
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `id` can be used as a run or variant id in a key.
pub fn valid_id(id: &str) -> bool {
    valid_segment(id) && !id.starts_with('.')
}

/// The key of a variant's image.
pub fn variant_key(run_id: &str, variant_id: &str) -> String {
    format!("renders/{run_id}/{variant_id}.png")
}

impl ImageStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| StoreError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`, after checking every segment.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let invalid = || StoreError::InvalidKey(key.to_owned());
        if key.contains('\\') || key.starts_with('/') {
            return Err(invalid());
        }
        let mut path = self.root.clone();
        for segment in key.split('/') {
            if !valid_segment(segment) {
                return Err(invalid());
            }
            path.push(segment);
        }
        // Belt and braces: what was built has only normal components below the root.
        let below = path.strip_prefix(&self.root).map_err(|_| invalid())?;
        if !below
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(invalid());
        }
        Ok(path)
    }

    /// Writes `bytes` under `key` (atomically: temp file then rename) and returns its
    /// sha256.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<StoredImage, StoreError> {
        let path = self.path_of(key)?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
        tokio::fs::write(&tmp, bytes).await.map_err(io(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io(&path))?;
        Ok(StoredImage {
            key: key.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }

    /// Reads the image under `key`.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(key.to_owned()))
            }
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_odd_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        for key in [
            "../etc/passwd",
            "renders/../../x.png",
            "/etc/passwd",
            "renders/a/..",
            "renders//x.png",
            "renders\\x.png",
            "renders/a b.png",
            "renders/%2e%2e/x.png",
            "",
        ] {
            assert!(
                matches!(store.path_of(key), Err(StoreError::InvalidKey(_))),
                "{key:?} accepted"
            );
        }
        assert!(store.path_of("renders/r-1/v_1.png").is_ok());
    }

    #[tokio::test]
    async fn put_then_get_round_trips_with_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let stored = store.put("renders/r/v.png", b"abc").await.unwrap();
        assert_eq!(
            stored.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(store.get("renders/r/v.png").await.unwrap(), b"abc");
        assert!(matches!(
            store.get("renders/r/w.png").await,
            Err(StoreError::NotFound(_))
        ));
    }
}
