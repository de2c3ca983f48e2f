//! A private three-node NATS cluster with JetStream on loopback ports: what the cluster
//! tests kill a stream leader in. Each node has its own store directory (kept across
//! [`NatsCluster::kill`] and [`NatsCluster::restart`]) and log; all are killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::free_port;

/// Nodes in the cluster: the smallest that keeps a quorum with one node down.
pub const NODES: usize = 3;

/// One node's ports and files.
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three `nats-server` processes routed to each other (cluster `telemetry-test`).
pub struct NatsCluster {
    nodes: Vec<Node>,
    _root: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three nodes and waits until each accepts clients (JetStream may still be
    /// electing its meta leader: [`NatsCluster::wait_for_jetstream`]).
    pub fn start() -> Self {
        let mut cluster = Self::unstarted();
        for i in 0..NODES {
            cluster.spawn(i);
        }
        for i in 0..NODES {
            cluster.wait_listening(i);
        }
        cluster
    }

    /// Picks ports and writes the three configs, starting no node yet
    /// ([`NatsCluster::restart`] starts one): a cluster without quorum.
    pub fn unstarted() -> Self {
        let root = tempfile::tempdir().expect("temp dir for the cluster");
        let nodes = (1..=NODES)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                dir: root.path().join(format!("n{i}")),
                child: None,
            })
            .collect();
        let cluster = Self { nodes, _root: root };
        for i in 0..NODES {
            cluster.write_config(i);
        }
        cluster
    }

    /// Waits until JetStream answers through every running node (a meta leader is
    /// elected), at most `timeout`.
    pub async fn wait_for_jetstream(&self, timeout: Duration) {
        let started = Instant::now();
        for i in (0..NODES).filter(|&i| self.is_running(i)) {
            // A node just (re)started can take longer than one connect attempt's
            // timeout on a busy machine (seen in CI): keep trying within `timeout`.
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(self.url(i))
                .await
                .expect("connect to a cluster node");
            loop {
                // The raw account-info request: async-nats' typed one cannot read a
                // 2.9 server's answer. An answer without an error means a meta leader.
                let answer = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.request("$JS.API.INFO", "".into()),
                )
                .await
                .map(|reply| {
                    reply.map(|message| String::from_utf8_lossy(&message.payload).into_owned())
                });
                if let Ok(Ok(body)) = &answer {
                    if !body.contains("\"error\"") {
                        break;
                    }
                }
                assert!(
                    started.elapsed() < timeout,
                    "JetStream did not answer through {} within {timeout:?} ({answer:?}):\n{}",
                    self.nodes[i].name,
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Every node's client URL, comma-separated: what `NATS_URL` takes.
    pub fn urls(&self) -> String {
        (0..NODES)
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Node `i`'s `server_name` (`n1`, `n2`, `n3`), as JetStream's cluster info names it.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Kills node `i` (SIGKILL) and waits for it to exit; its store stays.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on the same ports and store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_listening(i);
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let log = std::fs::read_to_string(log_file(&node.dir))
                    .unwrap_or_else(|err| format!("(no log: {err})"));
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} (last 40 lines)\n{}", node.name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn write_config(&self, i: usize) {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.dir).expect("create the node's directory");
        let routes = self
            .nodes
            .iter()
            .filter(|other| other.name != node.name)
            .map(|other| format!("nats-route://127.0.0.1:{}", other.cluster_port))
            .collect::<Vec<_>>()
            .join(", ");
        // A fixed storage limit: left to itself each node would take 75% of the
        // disk's free space, and three nodes on one disk would over-promise it.
        let config = format!(
            "server_name: {name}\n\
             listen: 127.0.0.1:{client}\n\
             cluster {{\n  name: telemetry-test\n  listen: 127.0.0.1:{cluster}\n  routes: [{routes}]\n}}\n\
             jetstream {{\n  store_dir: {store:?}\n  max_file_store: 1TB\n  max_memory_store: 256MB\n}}\n",
            name = node.name,
            client = node.client_port,
            cluster = node.cluster_port,
            store = node.dir.join("js").display().to_string(),
        );
        std::fs::write(config_file(&node.dir), config).expect("write the node's config");
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut command = Command::new("nats-server");
        command
            .arg("-c")
            .arg(config_file(&node.dir))
            .arg("-l")
            .arg(log_file(&node.dir));
        node.child = Some(crate::spawn_nats_server(&mut command));
    }

    fn wait_listening(&self, i: usize) {
        let node = &self.nodes[i];
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", node.client_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "cluster node {} did not listen on {} within 10 s:\n{}",
                node.name,
                node.client_port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }
}

fn config_file(dir: &Path) -> PathBuf {
    dir.join("nats.conf")
}

fn log_file(dir: &Path) -> PathBuf {
    dir.join("nats-server.log")
}
