//! Watches with etcd's guarantees, served by every member from its own
//! applied state.
//!
//! The applier hands each committed change to the [`hub::WatchHub`], which
//! delivers it to the *synced* watchers, those that have seen everything up
//! to the previous revision. A watcher that starts in the past, or whose
//! stream cannot take more (its client reads slowly or not at all), is
//! *unsynced*: the [`syncer`] catches it up from the revision log on disk, in
//! batches, and moves it back once it has reached the newest revision. Apply
//! never waits for a watcher, and a slow watcher never delays another one.
//!
//! - ordered, unique, reliable: a watcher has exactly one "next revision" and
//!   is fed either live or from history, never both;
//! - atomic: all events of a revision go out in one response (a `fragment`ed
//!   response only splits when the client asked for it);
//! - resumable: history is read back from any uncompacted revision;
//! - bookmarkable: progress notifications carry a revision only when
//!   everything up to it has been handed to the stream.
//!
//! Files: [`watcher`] (one watch), [`stream`] (one gRPC watch stream's outgoing
//! queue), [`event`] (changes and history as `mvccpb::Event`s), [`hub`]
//! (registration and live delivery), [`syncer`] (catch-up).

pub mod event;
pub mod hub;
pub mod stream;
pub mod syncer;
pub mod watcher;

pub use hub::WatchHub;

/// Revisions sent to a catching-up watcher in one response, as in etcd.
pub const MAX_REVISIONS_PER_RESPONSE: i64 = 1000;
