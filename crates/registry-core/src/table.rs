//! The process-wide session table: the one place session state changes.
//!
//! Every thread (Node environment) that loads the addon shares it. It holds plain data only;
//! the socket objects stay in their thread's handle table (`handles.rs`). Each record names
//! its owner environment and carries a generation, so an event from a socket that has since
//! been replaced (even in another thread) is recognised as stale and dropped.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::LazyLock;

use compact_str::CompactString;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::errors::RegistryError;
use crate::state::{SessionState, Status, Transition};
use crate::versions;

/// Identifies one Node environment (main thread or a worker) for the life of the process
/// (one per environment ever created: 32 bits do not run out).
pub type EnvKey = u32;

/// Tells the sockets registered under one id apart: a new one on every registration, from one
/// process-wide counter. 32 bits, wrapping: an event from a replaced socket could only be
/// taken for the current one's after 2^32 registrations in between, while that old socket
/// still emits.
pub type Generation = u32;

/// One session in the table. Kept for every session of the process, so it is small (48
/// bytes, pinned by a test): the rare parts of the state are behind one pointer, and the
/// registration order shares a word with the version slot.
#[derive(Clone, Debug)]
pub struct SessionRecord {
  pub state: SessionState,
  /// [`Self::seq`] in the high bits, [`Self::slot`] in the low [`SLOT_BITS`].
  seq_slot: u64,
  pub generation: Generation,
  pub owner: EnvKey,
}

/// Bits of a record's version slot: every slot [`versions`] hands out, and `NO_SLOT`.
const SLOT_BITS: u32 = 23;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const _: () = assert!((versions::SLOTS as u64) < SLOT_MASK);

impl SessionRecord {
  /// Registration order (kept on replace, as `Map.set` keeps a key's place): the order of
  /// sessions in every listing. 41 bits: listings would only mix up sessions registered
  /// before and after 2^41 (two trillion) new ids in one process.
  pub fn seq(&self) -> u64 {
    self.seq_slot >> SLOT_BITS
  }

  /// The record's slot in [`versions`], whose counter every change of the state bumps.
  pub fn slot(&self) -> u32 {
    match self.seq_slot & SLOT_MASK {
      SLOT_MASK => versions::NO_SLOT,
      slot => slot as u32,
    }
  }

  /// The record as every reader must see it: the time of an update index.js applied without
  /// a native call (`versions::touched`) folded into `lastActivity`. Every access to a record
  /// goes through this first.
  fn caught_up(&self) -> &Self {
    if let Some(t) = versions::touched(self.slot()) {
      self.state.note_activity(t);
    }
    self
  }

  /// The record's version, read before its state is caught up: index.js writes a touch time
  /// before it moves the version, so a version read first is never paired with an older time
  /// (a state cached with it would look current while it is not).
  fn versioned(&self) -> u32 {
    let version = versions::get(self.slot());
    self.caught_up();
    version
  }

  fn set_seq_slot(&mut self, seq: u64, slot: u32) {
    let slot = if slot == versions::NO_SLOT {
      SLOT_MASK
    } else {
      u64::from(slot)
    };
    self.seq_slot = (seq << SLOT_BITS) | slot;
  }
}

// Session ids are chosen by the bot that runs the sessions, not by an attacker: a fast hash
// (FxHash) beats the default SipHash on every lookup, registration and removal. Keys are
// `CompactString`s: an id of up to 24 bytes lives in the key itself, with no allocation.
static TABLE: LazyLock<DashMap<CompactString, SessionRecord, FxBuildHasher>> =
  LazyLock::new(|| DashMap::with_hasher(FxBuildHasher));
static NEXT_GENERATION: AtomicU32 = AtomicU32::new(1);
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// What `register` found under the id before.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
  pub generation: Generation,
  /// The owner and generation of the record this one replaced, if any.
  pub previous: Option<(EnvKey, Generation)>,
  pub previous_state: Option<SessionState>,
}

pub fn len() -> usize {
  TABLE.len()
}

/// Creates (or replaces) the record for `id`, owned by `owner`.
///
/// A record owned by another environment is only replaced with `takeover`; `owner_thread`
/// tells the error which thread holds it.
pub fn register(
  id: &str,
  owner: EnvKey,
  thread_id: u32,
  tracked: bool,
  takeover: bool,
  now: f64,
) -> Result<Registered, RegistryError> {
  let mut generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
  if generation == 0 {
    // Wrapped: 0 is never issued, so a generation that is no number (read as 0) never matches.
    generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
  }
  let mut state = SessionState::new(now, tracked, thread_id);
  state.set_connecting_since(tracked.then_some(now));
  let mut record = SessionRecord {
    state,
    seq_slot: SLOT_MASK,
    generation,
    owner,
  };
  // A replaced id is found without copying it: `entry` needs an owned key, whose allocation
  // showed in perf on every replace. A new id is looked up twice (the entry locks again, so a
  // registration by another thread in between is still seen).
  if let Some(mut old) = TABLE.get_mut(id) {
    return replace(id, &mut old, record, owner, takeover);
  }
  match TABLE.entry(CompactString::from(id)) {
    Entry::Occupied(mut slot) => replace(id, slot.get_mut(), record, owner, takeover),
    Entry::Vacant(slot) => {
      record.set_seq_slot(NEXT_SEQ.fetch_add(1, Ordering::Relaxed), versions::alloc());
      slot.insert(record);
      Ok(Registered {
        generation,
        previous: None,
        previous_state: None,
      })
    }
  }
}

/// `register` over an existing record `old` (under its lock): refused when another
/// environment owns it and this is no takeover.
fn replace(
  id: &str,
  old: &mut SessionRecord,
  mut record: SessionRecord,
  owner: EnvKey,
  takeover: bool,
) -> Result<Registered, RegistryError> {
  if old.owner != owner && !takeover {
    return Err(RegistryError::SessionOwnedByOtherThread {
      session_id: id.to_owned(),
      thread_id: old.state.thread_id,
    });
  }
  let previous = Some((old.owner, old.generation));
  old.caught_up();
  record.seq_slot = old.seq_slot;
  versions::bump(record.slot());
  let generation = record.generation;
  std::mem::swap(old, &mut record);
  Ok(Registered {
    generation,
    previous,
    previous_state: Some(record.state),
  })
}

/// Removes the record of `id` if `owner` owns it: an environment removing its own session
/// (another thread may have taken the id over meanwhile; that record is not ours to remove).
pub fn remove_owned(id: &str, owner: EnvKey) -> Option<SessionRecord> {
  let (_, r) = TABLE.remove_if(id, |_, r| r.owner == owner)?;
  r.caught_up();
  versions::free(r.slot());
  Some(r)
}

/// Whether `owner` owns the record of `id`.
pub fn is_owned_by(id: &str, owner: EnvKey) -> bool {
  TABLE.get(id).is_some_and(|r| r.owner == owner)
}

/// Removes every record owned by `owner` (an environment going away).
pub fn remove_owned_by(owner: EnvKey) -> Vec<(String, SessionRecord)> {
  let ids: Vec<CompactString> = TABLE
    .iter()
    .filter(|r| r.owner == owner)
    .map(|r| r.key().clone())
    .collect();
  ids
    .into_iter()
    .filter_map(|id| TABLE.remove_if(&id, |_, r| r.owner == owner))
    .map(|(id, r)| {
      r.caught_up();
      versions::free(r.slot());
      (id.into_string(), r)
    })
    .collect()
}

/// The outcome of a change applied to one record.
pub struct Applied<T> {
  pub value: T,
  /// Before/after copies of the state when status or isConnected changed; `None` otherwise
  /// (and when nobody listens, to save the copies).
  pub change: Option<(SessionState, SessionState)>,
  /// The record's version slot and the version this change gave it (the one before is
  /// `version - 1`, wrapping): every change of a record bumps its version under its lock, so a
  /// state cached at `version - 1` plus this change is the state at `version`. (A touch from
  /// index.js moves the version without the lock, by a swap from the version its thread
  /// checked; one that lands between this change's catching up and its bump makes the versions
  /// skip, and no cached state matches `version - 1`.)
  pub slot: u32,
  pub version: u32,
}

/// Applies `f` to the record of `id`, if it exists and (with `Some`) has that generation.
/// `f` returns a [`Transition`]; when it changed and `want_copies()` (asked under the record's
/// lock, so a waiter that subscribes and reads the state concurrently cannot miss the change),
/// the two states are copied for the listeners.
pub fn update<T>(
  id: &str,
  generation: Option<Generation>,
  want_copies: impl FnOnce() -> bool,
  f: impl FnOnce(&mut SessionRecord) -> (T, Option<Transition>),
) -> Option<Applied<T>> {
  let mut record = TABLE.get_mut(id)?;
  if generation.is_some_and(|g| record.generation != g) {
    return None;
  }
  record.caught_up();
  let before = want_copies().then(|| record.state.clone());
  let (value, transition) = f(&mut record);
  let slot = record.slot();
  let version = versions::bump(slot);
  if let Some(t) = transition {
    let state = &mut record.state;
    if t.status.1 == Some(Status::Connecting) && t.status.0 != t.status.1 {
      state.set_connecting_since(Some(state.last_activity()));
      state.set_stuck_reported(false);
    } else if t.status.1 != Some(Status::Connecting) {
      state.set_connecting_since(None);
    }
  }
  let change = match (transition, before) {
    (Some(t), Some(before)) if t.changed() => Some((before, record.state.clone())),
    _ => None,
  };
  Some(Applied {
    value,
    change,
    slot,
    version,
  })
}

/// Calls `f` with the state of `id` and its slot's version, read together under the record's
/// lock.
pub fn with_state<T>(id: &str, f: impl FnOnce(&SessionState, u32, u32) -> T) -> Option<T> {
  TABLE.get(id).map(|r| f(&r.state, r.slot(), r.versioned()))
}

pub fn get(id: &str) -> Option<SessionState> {
  TABLE.get(id).map(|r| r.caught_up().state.clone())
}

/// Calls `f` with the record of `id`, if any, without copying it.
pub fn for_one(id: &str, f: impl FnOnce(&SessionRecord)) {
  if let Some(r) = TABLE.get(id) {
    f(r.caught_up());
  }
}

pub fn seq_of(id: &str) -> Option<u64> {
  TABLE.get(id).map(|r| r.seq())
}

/// Calls `f` for every record with its slot's version, without copying. `f` must not touch
/// the table.
pub fn for_each(mut f: impl FnMut(&str, &SessionRecord, u32)) {
  for r in TABLE.iter() {
    let version = r.versioned();
    f(r.key().as_str(), r.value(), version);
  }
}

/// All sessions, copied, in registration order.
pub fn all() -> Vec<(String, SessionState)> {
  let mut out: Vec<(u64, String, SessionState)> = TABLE
    .iter()
    .map(|r| (r.seq(), r.key().to_string(), r.caught_up().state.clone()))
    .collect();
  out.sort_unstable_by_key(|r| r.0);
  out.into_iter().map(|(_, id, s)| (id, s)).collect()
}

/// Marks connecting sessions older than `stuck_after_ms` as reported, returning their states.
pub fn take_newly_stuck(now: f64, stuck_after_ms: f64) -> Vec<(String, SessionState)> {
  let mut out = Vec::new();
  for mut r in TABLE.iter_mut() {
    if r.state.stuck_reported() || r.state.status != Some(Status::Connecting) {
      continue;
    }
    if let Some(since) = r.state.connecting_since() {
      if now - since > stuck_after_ms {
        r.state.set_stuck_reported(true);
        out.push((r.key().to_string(), r.caught_up().state.clone()));
      }
    }
  }
  out
}

#[cfg(test)]
pub(crate) fn clear_for_tests() {
  TABLE.clear();
}

#[cfg(test)]
pub(crate) mod tests {
  use super::*;
  use crate::state::{ConnectionUpdate, StatePatch};
  use std::sync::Mutex;

  // The table is process-wide, so its tests take turns.
  pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

  /// A record is kept for every session of the process: growing it (or its key) is a
  /// decision, not an accident.
  #[test]
  fn record_size_is_pinned() {
    assert_eq!(std::mem::size_of::<SessionRecord>(), 48);
    assert_eq!(std::mem::size_of::<CompactString>(), 24);
    assert_eq!(std::mem::size_of::<(CompactString, SessionRecord)>(), 72);
  }

  #[test]
  fn seq_and_slot_share_a_word() {
    let mut r = SessionRecord {
      state: SessionState::new(0.0, false, 0),
      seq_slot: SLOT_MASK,
      generation: 1,
      owner: 1,
    };
    assert_eq!((r.seq(), r.slot()), (0, versions::NO_SLOT));
    let last = versions::SLOTS as u32 - 1;
    for (seq, slot) in [
      (1, 0),
      (7, last),
      ((1 << 41) - 1, 5),
      (3, versions::NO_SLOT),
    ] {
      r.set_seq_slot(seq, slot);
      assert_eq!((r.seq(), r.slot()), (seq, slot));
    }
  }

  #[test]
  fn long_ids_work_as_keys() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    let long = "a-session-id-longer-than-twenty-four-bytes";
    for id in ["", "short", "exactly-24-bytes-long-id", long] {
      register(id, 1, 0, false, false, 1.0).unwrap();
      assert!(is_owned_by(id, 1), "{id}");
    }
    assert_eq!(all().last().unwrap().0, long);
    assert!(remove_owned(long, 1).is_some());
    assert_eq!(remove_owned_by(1).len(), 3);
  }

  #[test]
  fn register_replace_and_ownership() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    let a = register("s1", 1, 0, true, false, 10.0).unwrap();
    assert_eq!(a.previous, None);
    let b = register("s1", 1, 0, true, false, 20.0).unwrap();
    assert_eq!(b.previous, Some((1, a.generation)));
    assert!(b.generation > a.generation);
    let err = register("s1", 2, 7, true, false, 30.0).unwrap_err();
    assert_eq!(err.code(), "ERR_SESSION_OWNED_BY_OTHER_THREAD");
    assert_eq!(
      get("s1").unwrap().created_at,
      20.0,
      "a refused register changes nothing"
    );
    let c = register("s1", 2, 7, true, true, 40.0).unwrap();
    assert_eq!(c.previous, Some((1, b.generation)));
    assert_eq!(get("s1").unwrap().thread_id, 7);
    assert_eq!(len(), 1);
  }

  #[test]
  fn only_the_owner_removes_its_record() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    register("own", 1, 0, false, false, 1.0).unwrap();
    register("own", 2, 5, false, true, 2.0).unwrap();
    assert!(!is_owned_by("own", 1) && is_owned_by("own", 2));
    assert!(
      remove_owned("own", 1).is_none(),
      "taken over: not the old owner's to remove"
    );
    assert_eq!(remove_owned("own", 2).unwrap().state.thread_id, 5);
    assert!(get("own").is_none() && !is_owned_by("own", 2));
  }

  #[test]
  fn every_removal_moves_the_version_a_reader_cached() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    for remove_it in [
      (|id: &str| remove_owned(id, 1).is_some()) as fn(&str) -> bool,
      |_| remove_owned_by(1).len() == 1,
    ] {
      register("v", 1, 0, false, false, 1.0).unwrap();
      let (slot, seen) = with_state("v", |_, slot, version| (slot, version)).unwrap();
      assert!(remove_it("v"));
      assert_ne!(
        versions::get(slot),
        seen,
        "a cached copy of a removed session must not look current"
      );
    }
  }

  /// What index.js does for an update that changes nothing but the time: the time into the
  /// slot's touch cell, then the version moved from the one it checked (compare-and-swap).
  fn touch_as_index_js(slot: u32, checked: u32, t: f64) -> bool {
    let page = slot >> versions::PAGE_SHIFT;
    let i = slot as usize & (versions::PAGE_SLOTS - 1);
    versions::touch_memory(page).unwrap()[i].store(t.to_bits(), Ordering::Relaxed);
    versions::page_memory(page).unwrap()[i]
      .compare_exchange(
        checked,
        checked.wrapping_add(1),
        Ordering::SeqCst,
        Ordering::SeqCst,
      )
      .is_ok()
  }

  #[test]
  fn a_touch_reaches_every_reader_and_never_moves_the_time_back() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    register("t", 1, 0, false, false, 1000.0).unwrap();
    let (slot, seen) = with_state("t", |_, slot, version| (slot, version)).unwrap();
    assert!(touch_as_index_js(slot, seen, 5000.0));
    let (time, version) = with_state("t", |s, _, v| (s.last_activity(), v)).unwrap();
    assert_eq!((time, version), (5000.0, seen.wrapping_add(1)));
    assert_eq!(get("t").unwrap().last_activity(), 5000.0);
    assert_eq!(all()[0].1.last_activity(), 5000.0);
    let mut listed = Vec::new();
    for_each(|_, r, v| listed.push((r.state.last_activity(), v)));
    assert_eq!(listed, [(5000.0, version)]);
    assert!(
      !touch_as_index_js(slot, seen, 6000.0),
      "a touch checked against an old version loses its swap"
    );
    assert!(touch_as_index_js(slot, version, 3000.0));
    assert_eq!(
      get("t").unwrap().last_activity(),
      5000.0,
      "an earlier time never moves lastActivity back"
    );
    // A native change reads the touched time first: its `before` copy has it.
    let applied = update(
      "t",
      None,
      || true,
      |r| {
        let t = r.state.apply_patch(StatePatch::default(), 7000.0);
        ((), Some(t))
      },
    )
    .unwrap();
    assert_eq!(applied.change, None, "nothing but the time changed");
    assert_eq!(get("t").unwrap().last_activity(), 7000.0);
    // The slot's next session starts without the old touch time.
    remove_owned("t", 1).unwrap();
    register("t2", 1, 0, false, false, 100.0).unwrap();
    let (slot2, _) = with_state("t2", |_, slot, version| (slot, version)).unwrap();
    if slot2 == slot {
      assert_eq!(versions::touched(slot), None);
    }
    assert_eq!(get("t2").unwrap().last_activity(), 100.0);
  }

  #[test]
  fn an_update_reports_the_version_it_made() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    register("u", 1, 0, false, false, 1.0).unwrap();
    let (slot, seen) = with_state("u", |_, slot, version| (slot, version)).unwrap();
    let applied = update("u", None, || false, |_| ((), None)).unwrap();
    assert_eq!(applied.slot, slot);
    assert_eq!(
      applied.version,
      seen.wrapping_add(1),
      "the version just before was the one read"
    );
    assert_eq!(versions::get(slot), applied.version);
  }

  #[test]
  fn stale_generations_are_ignored() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    let old = register("s2", 1, 0, true, false, 1.0).unwrap().generation;
    let new = register("s2", 1, 0, true, false, 2.0).unwrap().generation;
    let open = ConnectionUpdate {
      connection: Some(crate::state::Connection::Open),
      ..Default::default()
    };
    let stale = update(
      "s2",
      Some(old),
      || false,
      |r| ((), Some(r.state.apply_connection_update(&open, 3.0))),
    );
    assert!(stale.is_none());
    assert!(!get("s2").unwrap().is_connected);
    let fresh = update(
      "s2",
      Some(new),
      || true,
      |r| ((), Some(r.state.apply_connection_update(&open, 3.0))),
    );
    let (before, after) = fresh.unwrap().change.unwrap();
    assert!(!before.is_connected && after.is_connected);
  }

  #[test]
  fn concurrent_updates_lose_nothing() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    register("shared", 1, 0, false, false, 0.0).unwrap();
    let threads: Vec<_> = (0..4)
      .map(|t| {
        std::thread::spawn(move || {
          let own = format!("own{t}");
          register(&own, 10 + t, t, false, false, 0.0).unwrap();
          for i in 0..10_000u64 {
            for id in ["shared", own.as_str()] {
              update(
                id,
                None,
                || false,
                |r| {
                  let n = r
                    .state
                    .custom()
                    .get("n")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                  let patch = StatePatch {
                    custom: vec![("n".into(), Some((n + 1).into()))],
                    ..Default::default()
                  };
                  ((), Some(r.state.apply_patch(patch, i as f64)))
                },
              );
            }
          }
        })
      })
      .collect();
    for t in threads {
      t.join().unwrap();
    }
    assert_eq!(get("shared").unwrap().custom()["n"], 40_000);
    for t in 0..4 {
      assert_eq!(get(&format!("own{t}")).unwrap().custom()["n"], 10_000);
    }
    assert_eq!(remove_owned_by(12).len(), 1);
    assert!(get("own2").is_none());
  }

  #[test]
  fn stuck_sessions_are_reported_once() {
    let _g = SERIAL.lock().unwrap();
    clear_for_tests();
    register("slow", 1, 0, true, false, 0.0).unwrap();
    register("untracked", 1, 0, false, false, 0.0).unwrap();
    assert!(take_newly_stuck(50.0, 100.0).is_empty());
    let stuck = take_newly_stuck(150.0, 100.0);
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].0, "slow");
    assert!(take_newly_stuck(300.0, 100.0).is_empty());
  }
}
