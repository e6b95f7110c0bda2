//! The JSON of the monitoring endpoint `/jsz?streams=true&consumers=true&config=true`, as
//! nats-server 2.9.10 returns it: the server's JetStream totals, the meta group in a cluster
//! (`meta_cluster`), then per account (`account_details`) its streams (`stream_detail`), each
//! with its consumers (`consumer_detail`).
//!
//! Field names are the server's, so that what a test reads here can be checked against the
//! NATS docs and a `curl` of the endpoint. Only what tests are likely to assert on is modelled;
//! other fields are ignored, and every field has a default because the server omits many of
//! them when they are zero or empty (`omitempty`), e.g. `num_deleted`, `lag`, `leader`.
//!
//! Durations (`max_age`, `ack_wait`, `active`, ...) are in nanoseconds, and timestamps are the
//! server's RFC 3339 strings, as on the wire.
//!
//! A server only lists the streams and consumers it hosts: in a cluster, a node that is not a
//! replica of a stream does not list it, and a follower's view may lag behind the leader's, in
//! particular a consumer's `delivered` and `num_ack_pending`, which followers only learn from
//! acknowledgements (see [`crate::nats::Cluster::stream`], which asks the leader).

use serde::Deserialize;

/// The whole `/jsz` answer of one server.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Jsz {
    pub server_id: String,
    /// When the server produced this answer.
    pub now: String,
    /// JetStream limits and store of this server.
    pub config: Option<JetStreamConfig>,
    /// Bytes used by memory and file storage, over all accounts.
    pub memory: u64,
    pub storage: u64,
    /// Number of streams, consumers, messages and message bytes on this server.
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
    /// JetStream API requests served, and how many of them failed.
    pub api: ApiStats,
    /// The JetStream meta group (absent on a server that is not in a cluster).
    pub meta_cluster: Option<MetaCluster>,
    pub account_details: Vec<AccountDetail>,
}

impl Jsz {
    /// The stream called `name`, in whichever account holds it.
    pub fn stream(&self, name: &str) -> Option<&StreamInfo> {
        self.account_details
            .iter()
            .flat_map(|account| &account.stream_detail)
            .find(|stream| stream.name == name)
    }
}

/// `config`: the server's JetStream settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct JetStreamConfig {
    /// Maximum bytes of memory and file storage (`max_memory_store`, `max_file_store`).
    pub max_memory: i64,
    pub max_storage: i64,
    /// Where the file store is: the configured `store_dir` plus `/jetstream`.
    pub store_dir: String,
}

/// `api`: JetStream API request counters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ApiStats {
    pub total: u64,
    pub errors: u64,
}

/// `meta_cluster`: the JetStream meta group, which owns the stream and consumer assignments.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MetaCluster {
    /// The cluster's name.
    pub name: Option<String>,
    /// `server_name` of the meta leader; absent while none is elected or known.
    pub leader: Option<String>,
    /// Number of servers in the meta group.
    pub cluster_size: usize,
    /// The other members; only the leader reports them.
    pub replicas: Vec<PeerInfo>,
}

/// An entry of `account_details`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AccountDetail {
    /// `$G` is the global account, the one clients use when there is no auth configured.
    pub name: String,
    pub id: String,
    pub memory: u64,
    pub storage: u64,
    pub api: ApiStats,
    pub stream_detail: Vec<StreamInfo>,
}

/// An entry of `stream_detail`: one stream as this server sees it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamInfo {
    pub name: String,
    pub created: String,
    /// Leader and replicas; a standalone server reports itself as leader.
    pub cluster: Option<ClusterInfo>,
    pub config: Option<StreamConfig>,
    pub state: StreamState,
    pub consumer_detail: Vec<ConsumerInfo>,
}

impl StreamInfo {
    /// The consumer called `name` (durable name, or the name of an ephemeral consumer).
    pub fn consumer(&self, name: &str) -> Option<&ConsumerInfo> {
        self.consumer_detail.iter().find(|c| c.name == name)
    }
}

/// `state` of a stream.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamState {
    /// Messages stored and their size, after limits, deletes and purges.
    pub messages: u64,
    pub bytes: u64,
    /// Sequence numbers of the oldest and newest stored message (0 when the stream never had
    /// one; after a purge, `first_seq` is `last_seq + 1`).
    pub first_seq: u64,
    pub first_ts: String,
    pub last_seq: u64,
    pub last_ts: String,
    /// Messages between `first_seq` and `last_seq` that were deleted individually.
    pub num_deleted: u64,
    /// Number of distinct subjects stored.
    pub num_subjects: u64,
    pub consumer_count: u64,
}

/// `config` of a stream (only with `config=true`, which the helpers ask for).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    /// `limits`, `interest` or `workqueue`.
    pub retention: String,
    /// `file` or `memory`.
    pub storage: String,
    pub num_replicas: usize,
    /// Limits; -1 means unlimited, `max_age` 0 too.
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: i64,
    pub max_msg_size: i64,
    /// `old` or `new`: what goes when a limit is hit.
    pub discard: String,
    pub duplicate_window: i64,
}

/// An entry of `consumer_detail`: one consumer as this server sees it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConsumerInfo {
    pub stream_name: String,
    pub name: String,
    pub created: String,
    pub config: Option<ConsumerConfig>,
    /// Last message delivered (to any client, acknowledged or not).
    pub delivered: SequenceInfo,
    /// Every message up to here is acknowledged.
    pub ack_floor: SequenceInfo,
    /// Delivered, not yet acknowledged.
    pub num_ack_pending: u64,
    /// Messages delivered more than once and not yet acknowledged.
    pub num_redelivered: u64,
    /// Pull requests waiting for messages.
    pub num_waiting: u64,
    /// Messages in the stream (matching the filter) not yet delivered.
    pub num_pending: u64,
    pub cluster: Option<ClusterInfo>,
}

/// `delivered` and `ack_floor` of a consumer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SequenceInfo {
    /// Counts deliveries (redeliveries included).
    pub consumer_seq: u64,
    /// The stream sequence of the message.
    pub stream_seq: u64,
    pub last_active: Option<String>,
}

/// `config` of a consumer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    pub durable_name: Option<String>,
    /// `all`, `last`, `new`, `by_start_sequence`, ...
    pub deliver_policy: String,
    /// `explicit`, `all` or `none`.
    pub ack_policy: String,
    pub ack_wait: i64,
    /// -1 (or absent, 0) means unlimited.
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    pub filter_subject: Option<String>,
    /// Set for push consumers.
    pub deliver_subject: Option<String>,
}

/// `cluster` of a stream or consumer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ClusterInfo {
    pub name: Option<String>,
    /// `server_name` of the leader, as this server knows it.
    pub leader: Option<String>,
    /// The other replicas (not the reporting server).
    pub replicas: Vec<PeerInfo>,
}

/// A member of a replicated group (`replicas`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    /// Its `server_name`.
    pub name: String,
    /// Whether it is caught up with the leader.
    pub current: bool,
    pub offline: bool,
    /// Nanoseconds since it was last heard from.
    pub active: u64,
    /// Entries it is behind.
    pub lag: u64,
    pub peer: String,
}

#[cfg(test)]
mod tests {
    use super::Jsz;

    /// Trimmed from what nats-server 2.9.10 answered for a stream with 5 published messages,
    /// one deleted, and a consumer that was handed 2 of them (none acknowledged).
    const STANDALONE: &str = r#"{
      "server_id": "NAQKE2ZN", "now": "2026-11-23T07:22:32.878690612Z",
      "config": {"max_memory": 18957376512, "max_storage": 104857600,
                 "store_dir": "/tmp/natsexp/store/jetstream"},
      "memory": 0, "storage": 180, "reserved_memory": 0, "reserved_storage": 0,
      "accounts": 1, "ha_assets": 0, "api": {"total": 3, "errors": 0},
      "streams": 1, "consumers": 1, "messages": 4, "bytes": 180,
      "account_details": [{
        "name": "$G", "id": "$G", "memory": 0, "storage": 180,
        "reserved_memory": 18446744073709551615, "reserved_storage": 18446744073709551615,
        "accounts": 0, "ha_assets": 0, "api": {"total": 3, "errors": 0},
        "stream_detail": [{
          "name": "ORDERS", "created": "2026-11-23T07:22:31.979183793Z",
          "cluster": {"leader": "exp1"},
          "config": {"name": "ORDERS", "subjects": ["orders.\u003e"], "retention": "limits",
                     "max_consumers": -1, "max_msgs": -1, "max_bytes": -1, "max_age": 0,
                     "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "old",
                     "storage": "file", "num_replicas": 1, "duplicate_window": 120000000000,
                     "allow_direct": false, "mirror_direct": false, "sealed": false,
                     "deny_delete": false, "deny_purge": false, "allow_rollup_hdrs": false},
          "state": {"messages": 4, "bytes": 180, "first_seq": 1,
                    "first_ts": "2026-11-23T07:22:31.988731564Z", "last_seq": 5,
                    "last_ts": "2026-11-23T07:22:32.031711793Z", "num_subjects": 1,
                    "num_deleted": 1, "consumer_count": 1},
          "consumer_detail": [{
            "stream_name": "ORDERS", "name": "worker", "created": "2026-11-23T07:22:32.031975083Z",
            "config": {"durable_name": "worker", "deliver_policy": "all",
                       "ack_policy": "explicit", "ack_wait": 30000000000, "max_deliver": 5,
                       "replay_policy": "instant", "max_waiting": 512, "max_ack_pending": 1000,
                       "num_replicas": 0},
            "delivered": {"consumer_seq": 2, "stream_seq": 2,
                          "last_active": "2026-11-23T07:22:32.040676566Z"},
            "ack_floor": {"consumer_seq": 0, "stream_seq": 0,
                          "last_active": "2026-11-23T07:22:32.342946368Z"},
            "num_ack_pending": 1, "num_redelivered": 0, "num_waiting": 0, "num_pending": 3
          }]
        }]
      }]
    }"#;

    #[test]
    fn parses_what_2_9_10_returns() {
        let jsz: Jsz = serde_json::from_str(STANDALONE).expect("parsing /jsz");
        assert!(jsz.meta_cluster.is_none());
        assert_eq!(jsz.api.total, 3);
        let config = jsz.config.as_ref().expect("config");
        assert_eq!(config.max_storage, 104857600);
        let stream = jsz.stream("ORDERS").expect("stream ORDERS");
        assert_eq!(stream.state.messages, 4);
        assert_eq!(stream.state.num_deleted, 1);
        assert_eq!((stream.state.first_seq, stream.state.last_seq), (1, 5));
        let stream_config = stream.config.as_ref().expect("stream config");
        assert_eq!(stream_config.subjects, ["orders.>"]);
        assert_eq!(stream_config.storage, "file");
        let cluster = stream.cluster.as_ref().expect("stream cluster");
        assert_eq!(cluster.leader.as_deref(), Some("exp1"));
        let consumer = stream.consumer("worker").expect("consumer worker");
        assert_eq!(consumer.num_pending, 3);
        assert_eq!(consumer.num_ack_pending, 1);
        assert_eq!(consumer.delivered.stream_seq, 2);
        assert_eq!(consumer.ack_floor.stream_seq, 0);
        let consumer_config = consumer.config.as_ref().expect("consumer config");
        assert_eq!(consumer_config.max_deliver, 5);
        assert!(jsz.stream("nope").is_none());
    }

    #[test]
    fn parses_a_cluster_member() {
        // A follower of the meta group, with no streams (`stream_detail` omitted).
        let text = r#"{"server_id": "X", "api": {"total": 0, "errors": 0},
            "meta_cluster": {"name": "exp", "leader": "n2", "peer": "44jzkV9D", "cluster_size": 3},
            "account_details": [{"name": "$G", "id": "$G"}]}"#;
        let jsz: Jsz = serde_json::from_str(text).expect("parsing /jsz");
        let meta = jsz.meta_cluster.expect("meta_cluster");
        assert_eq!(meta.leader.as_deref(), Some("n2"));
        assert_eq!(meta.cluster_size, 3);
        assert!(meta.replicas.is_empty());
        assert!(jsz.account_details[0].stream_detail.is_empty());
    }
}
