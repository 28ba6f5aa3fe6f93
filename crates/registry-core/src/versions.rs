//! Per-session change counters ("versions") in memory that every JavaScript thread reads
//! directly, so a thread can tell that a state it shaped earlier is still current without a
//! native call.
//!
//! Each record of the table holds a slot; the slot's counter is bumped by every change to the
//! record (under the record's lock) and again when the record is removed and when the slot is
//! taken by another session, so a (slot, version) pair read together with a state never
//! matches after that state changed, went away, or the slot went to another id (barring 2^32
//! changes of one slot between two reads). Slots live in fixed pages that are allocated once
//! and never move or go away: the binding lends each page to JavaScript as an external
//! `ArrayBuffer`.
//!
//! Beside each counter is the slot's touch time: the `lastActivity` of the last update that
//! index.js applied without a native call because it changed nothing else (an update whose
//! values the session already has). index.js writes the time, then bumps the counter with a
//! compare-and-swap from the version it checked its cached state against; the table folds the
//! time into the record's state whenever it reads the record ([`touched`]), so every reader sees
//! it, and the new version tells every thread's cache that the state moved. A touch whose swap
//! fails (another change came first) crosses as a native update, which bumps the version again.
//! One race is left: if the session was removed and its slot taken by a new one between a
//! touch's write and its failed swap (nanoseconds), the new session may show that time, which
//! is within a millisecond of its registration's, until its next change.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Slots per page (a power of two: JavaScript splits a slot with a shift and a mask).
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SLOTS: usize = 1 << PAGE_SHIFT;
const MAX_PAGES: usize = 1024;
/// Slots there can be at once.
pub const SLOTS: usize = MAX_PAGES * PAGE_SLOTS;
/// A record without a slot (more than [`SLOTS`] sessions at once): its state is
/// never cached.
pub const NO_SLOT: u32 = u32::MAX;

type Page = Box<[AtomicU32]>;
/// Touch times, as the bits of an f64 (0: none), by slot like the counters.
type TouchPage = Box<[AtomicU64]>;

static PAGES: [OnceLock<Page>; MAX_PAGES] = [const { OnceLock::new() }; MAX_PAGES];
static TOUCHES: [OnceLock<TouchPage>; MAX_PAGES] = [const { OnceLock::new() }; MAX_PAGES];
/// Freed slots, and the next never-used one.
static FREE: Mutex<(Vec<u32>, u32)> = Mutex::new((Vec::new(), 0));

/// Slots this thread freed, reused by its own allocations first and handed to [`FREE`] in
/// batches: a removal takes no process-wide lock (it showed in `unregisterSocket`'s time).
/// Every slot here already had its version bumped when freed.
struct Freed(Vec<u32>);

/// Slots a thread keeps before handing them to [`FREE`] (half of them, the oldest).
const LOCAL_MAX: usize = 128;

impl Drop for Freed {
  // A thread that goes away gives its slots back.
  fn drop(&mut self) {
    if !self.0.is_empty() {
      lock_free().0.append(&mut self.0);
    }
  }
}

thread_local! {
  static FREED: RefCell<Freed> = const { RefCell::new(Freed(Vec::new())) };
}

fn lock_free() -> std::sync::MutexGuard<'static, (Vec<u32>, u32)> {
  FREE.lock().unwrap_or_else(|e| e.into_inner())
}

fn page(index: usize) -> &'static [AtomicU32] {
  PAGES[index].get_or_init(|| (0..PAGE_SLOTS).map(|_| AtomicU32::new(0)).collect())
}

fn counter(slot: u32) -> Option<&'static AtomicU32> {
  let p = (slot >> PAGE_SHIFT) as usize;
  (p < MAX_PAGES).then(|| &page(p)[slot as usize & (PAGE_SLOTS - 1)])
}

/// A touch page is made when JavaScript first asks for it ([`touch_memory`]): index.js does
/// that when it caches a state of that page, and only a cached state is ever touched. A
/// process whose states are never read pays nothing for them (8 bytes per slot otherwise).
fn touch_cell(slot: u32) -> Option<&'static AtomicU64> {
  let p = (slot >> PAGE_SHIFT) as usize;
  let page = TOUCHES.get(p)?.get()?;
  Some(&page[slot as usize & (PAGE_SLOTS - 1)])
}

/// A slot for a new record, its version already bumped.
pub fn alloc() -> u32 {
  // `try_with`: during thread teardown the local list is gone; the global one still works.
  let local = FREED
    .try_with(|f| f.try_borrow_mut().ok().and_then(|mut f| f.0.pop()))
    .ok()
    .flatten();
  let slot = match local {
    Some(s) => s,
    None => {
      let mut free = lock_free();
      match free.0.pop() {
        Some(s) => s,
        None if (free.1 as usize) < SLOTS => {
          free.1 += 1;
          free.1 - 1
        }
        None => return NO_SLOT,
      }
    }
  };
  // The previous owner's touch time is not the new one's. Cleared before the bump: a thread
  // that sees the new version sees no old time. (A page made after this check starts at 0.)
  if let Some(cell) = touch_cell(slot) {
    cell.store(0, Ordering::Relaxed);
  }
  bump(slot);
  slot
}

/// Gives a removed record's slot back, its version bumped first.
pub fn free(slot: u32) {
  if slot == NO_SLOT {
    return;
  }
  bump(slot);
  let kept = FREED
    .try_with(|f| {
      let Ok(mut f) = f.try_borrow_mut() else {
        return false;
      };
      f.0.push(slot);
      if f.0.len() >= LOCAL_MAX {
        lock_free().0.extend(f.0.drain(..LOCAL_MAX / 2));
      }
      true
    })
    .unwrap_or(false);
  if !kept {
    lock_free().0.push(slot);
  }
}

/// Marks the record in `slot` changed and returns its new version (0 for `NO_SLOT`). Called
/// under the record's lock.
pub fn bump(slot: u32) -> u32 {
  counter(slot).map_or(0, |c| c.fetch_add(1, Ordering::Release).wrapping_add(1))
}

/// The slot's version (0 for `NO_SLOT`).
pub fn get(slot: u32) -> u32 {
  counter(slot).map_or(0, |c| c.load(Ordering::Acquire))
}

/// The memory of page `index` (allocated on first use; it lives as long as the process), or
/// `None` past the last page.
pub fn page_memory(index: u32) -> Option<&'static [AtomicU32]> {
  ((index as usize) < MAX_PAGES).then(|| page(index as usize))
}

/// The slot's touch time, if index.js touched it since the slot was taken (see the module's
/// comment). Read after the record's lock: a version index.js bumped is seen with its time.
pub fn touched(slot: u32) -> Option<f64> {
  let bits = touch_cell(slot)?.load(Ordering::Acquire);
  (bits != 0).then(|| f64::from_bits(bits))
}

/// The memory of touch page `index`, made on first use, as [`page_memory`].
pub fn touch_memory(index: u32) -> Option<&'static [AtomicU64]> {
  let page = TOUCHES.get(index as usize)?;
  Some(page.get_or_init(|| (0..PAGE_SLOTS).map(|_| AtomicU64::new(0)).collect()))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn versions_move_on_every_change_and_on_reuse() {
    let a = alloc();
    let v = get(a);
    bump(a);
    assert_eq!(get(a), v + 1);
    free(a);
    assert_eq!(get(a), v + 2, "removal changes the version");
    // Another test may take the freed slot first; whoever takes it bumps it again.
    let b = alloc();
    if b == a {
      assert_eq!(get(b), v + 3, "reuse changes the version");
    }
    free(b);
    let mem = page_memory(a >> PAGE_SHIFT).unwrap();
    assert_eq!(mem.len(), PAGE_SLOTS);
    assert!(page_memory(MAX_PAGES as u32).is_none());
  }

  #[test]
  fn freed_slots_are_batched_and_never_lost() {
    // The table's tests allocate slots too: take turns with them, so the shared list is ours.
    let _g = crate::table::tests::SERIAL.lock().unwrap();
    let local_len = || FREED.with(|f| f.borrow().0.len());
    let slots: Vec<u32> = (0..LOCAL_MAX * 3).map(|_| alloc()).collect();
    let versions: Vec<u32> = slots.iter().map(|&s| get(s)).collect();
    for &s in &slots {
      free(s);
    }
    assert!(local_len() < LOCAL_MAX, "a thread keeps a bounded batch");
    for (&s, &v) in slots.iter().zip(&versions) {
      assert_eq!(get(s), v.wrapping_add(1), "freed: version bumped at once");
    }
    // A thread that ends hands its batch to the shared list.
    let theirs: Vec<u32> = std::thread::spawn(|| {
      let s: Vec<u32> = (0..10).map(|_| alloc()).collect();
      s.iter().for_each(|&x| free(x));
      s
    })
    .join()
    .unwrap();
    let shared = lock_free().0.clone();
    assert!(theirs.iter().all(|s| shared.contains(s)));
  }
}
