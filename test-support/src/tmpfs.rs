//! A tiny tmpfs to fill on purpose: what a full disk, or a file system turned read-only,
//! does to a database. Mounting needs root (CI and the developers' machines run as
//! root); a test that cannot mount fails with that reason, it does not skip.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::random_token;

/// A mounted tmpfs of a fixed size; unmounted and removed on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

/// Name of the file [`Tmpfs::fill`] writes.
const FILLER: &str = "filler";

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at a fresh directory under the system temp dir (mode
    /// 0755 on the way, so a server running as another user can reach it). `owner`
    /// (`user:group` or a user name) owns its root: a Postgres tablespace must be
    /// owned by the server's user.
    pub fn mount(bytes: u64, owner: Option<&str>) -> Self {
        let path = std::env::temp_dir().join(format!("telemetry-tmpfs-{}", random_token()));
        std::fs::create_dir(&path).expect("create the tmpfs mount point");
        let mut options = format!("size={bytes},mode=0755");
        if let Some(owner) = owner {
            let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
            options.push_str(&format!(",uid={},gid={}", id("-u", user), id("-g", group)));
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        if !out.status.success() {
            let _ = std::fs::remove_dir(&path);
            panic!(
                "cannot mount a {bytes}-byte tmpfs at {} ({}): this test fills a disk on \
                 purpose and must run as root (as CI does); run it with sudo or as root",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Self { path }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a filler file until the file system is full; returns the bytes written.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(FILLER))
            .expect("create the filler");
        let mut written = 0;
        // Large writes first, then small ones for the last pages.
        for chunk in [64 * 1024, 4096, 512] {
            let block = vec![0xa5u8; chunk];
            while file.write_all(&block).is_ok() {
                written += chunk as u64;
            }
        }
        let _ = file.sync_all();
        written
    }

    /// Removes the filler: the space is free again.
    pub fn free(&self) {
        std::fs::remove_file(self.path.join(FILLER)).expect("remove the filler");
    }

    /// Remounts the file system read-only (`true`) or read-write (`false`).
    pub fn set_read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let status = Command::new("mount")
            .args(["-o", mode])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -o {mode} {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file there must not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// `id -u USER` / `id -g GROUP`-like look-up through `id`, which knows both.
fn id(flag: &str, name: &str) -> String {
    let out = Command::new("id")
        .args([flag, name])
        .output()
        .expect("run id");
    assert!(out.status.success(), "no such user or group: {name}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
