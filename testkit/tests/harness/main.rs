//! Tests of the test kit itself, one binary: `pg` against the shared server and private
//! clusters, `nats` against real nats-server processes and a 3-node cluster.

mod nats;
mod pg;
