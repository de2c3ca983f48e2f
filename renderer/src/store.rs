//! The image store: rendered variants as files under one directory.
//!
//! Keys are `renders/{run_id}/{variant_id}.png`, the same key reported in the variant's
//! telemetry, so the monitor can link a result to its image. Keys that come back from
//! the outside (`GET /images/{key}`) are checked segment by segment: no `..`, no
//! absolute paths, no backslashes, only plain names, so a key can never leave the root.
//! Reading also resolves symbolic links and serves only what resolves inside the root,
//! and only regular files: a directory is as absent as a missing file.

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

/// Whether `err` means there is nothing (readable as a file) at the path.
fn absent(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    matches!(err.kind(), NotFound | NotADirectory | IsADirectory)
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

    /// Reads the image under `key`: a regular file that resolves (symbolic links
    /// followed) inside the root. Anything else is [`StoreError::NotFound`], so the
    /// answer never tells a directory from a missing file. The check and the open are
    /// two steps: whoever can write into the store directory could swap a link in
    /// between, so keep it writable by the renderer only.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        use tokio::io::AsyncReadExt as _;
        let path = self.path_of(key)?;
        let not_found = || StoreError::NotFound(key.to_owned());
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let real = match tokio::fs::canonicalize(&path).await {
            Ok(real) => real,
            Err(err) if absent(&err) => return Err(not_found()),
            Err(source) => return Err(io(&path)(source)),
        };
        let root = tokio::fs::canonicalize(&self.root)
            .await
            .map_err(io(&self.root))?;
        if !real.starts_with(&root) {
            tracing::warn!(
                key,
                target = %real.display(),
                "image key resolves outside the image store; not served"
            );
            return Err(not_found());
        }
        let mut file = match tokio::fs::File::open(&real).await {
            Ok(file) => file,
            Err(err) if absent(&err) => return Err(not_found()),
            Err(source) => return Err(io(&real)(source)),
        };
        let metadata = file.metadata().await.map_err(io(&real))?;
        if !metadata.is_file() {
            return Err(not_found());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).await.map_err(io(&real))?;
        Ok(bytes)
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

    #[tokio::test]
    async fn directories_and_links_out_of_the_store_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        store.put("renders/r/v.png", b"abc").await.unwrap();
        std::fs::write(dir.path().join("outside.png"), b"outside").unwrap();
        let renders = store.root().join("renders");
        std::os::unix::fs::symlink(dir.path().join("outside.png"), renders.join("out.png"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path(), renders.join("up")).unwrap();
        std::os::unix::fs::symlink(renders.join("r/v.png"), renders.join("in.png")).unwrap();
        for key in [
            "renders",
            "renders/r",
            "renders/r/v.png/x",
            "renders/out.png",
            "renders/up/outside.png",
        ] {
            assert!(
                matches!(store.get(key).await, Err(StoreError::NotFound(_))),
                "{key}"
            );
        }
        assert_eq!(store.get("renders/in.png").await.unwrap(), b"abc");
    }
}
