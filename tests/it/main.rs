//! Integration tests on real processes: Shoal members, etcd 3.4, etcdctl.

mod agent;
mod auth;
mod backup;
mod client_compat;
mod containers;
mod controllers;
mod ctl_objects;
mod e2e;
mod errors;
mod etcdctl_compat;
mod examples;
mod faults;
mod gateway;
mod lease;
mod lease_compat;
mod maintenance;
mod membership;
mod objects;
mod observe;
mod ops_compat;
mod replication;
mod services;
mod tls;
mod up;
mod watch;
mod watch_compat;
